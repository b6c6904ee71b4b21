//! `psychiq job JID` for a tracked job, `psychiq cancel JID` and `psychiq events`.

use serde_json::json;

use super::{Failure, Out, Outcome};
use crate::api::{Api, Cancellation, utc_text};
use crate::job::job_events::Event;
use crate::status::JobStatus;

/// A tracked job's status, if it has one (`true`: printed); else the caller looks for it.
pub(super) async fn tracked(api: &Api, out: &Out, jid: &str) -> std::result::Result<bool, Failure> {
    let Some(status) = api.tracked_status(jid).await? else {
        return Ok(false);
    };
    out.done(
        serde_json::to_value(&status).unwrap_or_default(),
        describe(&status),
    );
    Ok(true)
}

/// A status as lines for people.
fn describe(status: &JobStatus) -> String {
    let mut lines = vec![format!(
        "{}: {} (tracked) · {} · queue {}",
        status.jid,
        status.state,
        status.class.as_deref().unwrap_or("?"),
        status.queue.as_deref().unwrap_or("?")
    )];
    let progress = status.progress.as_ref().map(|p| match p.percent() {
        Some(percent) => format!("{}/{} ({percent:.0}%) {}", p.done, p.total, p.message),
        None => format!("{} {}", p.done, p.message),
    });
    let rows = status
        .details(utc_text)
        .into_iter()
        .chain(progress.map(|p| ("progress", p)))
        .chain(status.result.clone().map(|r| ("result", r)));
    for (name, value) in rows {
        lines.push(format!("  {name:<12} {value}"));
    }
    lines.join("\n")
}

pub(super) async fn cancel(api: &Api, out: &Out, jid: &str) -> Outcome {
    let (value, message) = match api.cancel(jid).await? {
        Cancellation::Removed(state) => (
            json!({"cancelled": true, "was": state}),
            format!("{jid}: cancelled; it was {state} and is removed"),
        ),
        Cancellation::Signalled { process } => (
            json!({"cancelled": true, "was": "running", "process": process}),
            format!(
                "{jid}: cancelling; {process} stops it within a second (its task is dropped after the server's --cancel-grace)"
            ),
        ),
        Cancellation::AlreadyFinished(state) => (
            json!({"cancelled": false, "state": state}),
            format!("{jid}: already {state}; nothing to cancel"),
        ),
        Cancellation::NotFound => {
            return Err(Failure::NotFound(format!(
                "no job {jid:?} is running, waiting or tracked; it is marked, so if it turns up within a day it ends as cancelled, unrun"
            )));
        }
    };
    out.done(value, message);
    Ok(())
}

pub(super) async fn events(
    api: &Api,
    out: &Out,
    follow: bool,
    class: Option<&str>,
    last: u64,
) -> Outcome {
    let client = api.client();
    let wanted = |event: &Event| class.is_none_or(|class| event.class == class);
    let print = |event: &Event| {
        if out.json {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        } else {
            let detail: Vec<String> = event
                .detail
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            println!(
                "{} {:<9} {} {} queue={} {}",
                utc_text(event.at),
                event.kind,
                event.class,
                event.jid,
                event.queue,
                detail.join(" ")
            );
        }
    };
    let recent = api.recent_events(last as usize).await?;
    if recent.is_empty() && !follow && !out.json {
        println!(
            "no events in {}: servers write them with --events, clients with Client::emit_events",
            api.keys().events()
        );
    }
    let after = recent.last().map(|e| e.id.clone());
    for event in recent.iter().filter(|e| wanted(e)) {
        print(event);
    }
    if !follow {
        return Ok(());
    }
    let mut stream = match after {
        Some(id) => client.events_after(&id).await?,
        None => client.events().await?,
    };
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(Ok(event)) if wanted(&event) => print(&event),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::Other(e)),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
