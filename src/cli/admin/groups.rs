//! `psychiq groups [list QUEUE|pause QUEUE GROUP|resume QUEUE GROUP|limit QUEUE GROUP N|
//! rate QUEUE GROUP COUNT/SECONDS]`.

use serde_json::json;

use super::{GroupsAction, Out, Outcome};
use std::time::Duration;

use crate::api::{Api, utc_text};
use crate::error::Error;

pub(super) async fn groups(api: &Api, out: &Out, action: GroupsAction) -> Outcome {
    match action {
        GroupsAction::List { queue, limit } => {
            let all = api.groups(&queue, limit).await?;
            let rows = all
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.backlog.to_string(),
                        format!("{}/{}", g.running, g.limit),
                        g.rate.map_or("-".to_string(), |r| {
                            format!("{}/{} in {}s", g.started_in_window, r.count, r.per_secs)
                        }),
                        if g.paused { "paused" } else { "running" }.to_string(),
                        utc_text(g.last_job_at),
                    ]
                })
                .collect();
            out.print(
                &json!(all),
                &[
                    "group",
                    "backlog",
                    "running",
                    "started (rate)",
                    "state",
                    "last job (UTC)",
                ],
                rows,
            );
        }
        GroupsAction::Pause { queue, group } => {
            let was = api.pause_group(&queue, &group).await?;
            out.done(
                json!({"paused": true, "was_running": was}),
                format!("group {group:?} of queue {queue:?}: paused (its running jobs finish)"),
            );
        }
        GroupsAction::Resume { queue, group } => {
            let was = api.resume_group(&queue, &group).await?;
            out.done(
                json!({"resumed": true, "was_paused": was}),
                format!("group {group:?} of queue {queue:?}: running"),
            );
        }
        GroupsAction::Limit { queue, group, jobs } => {
            api.set_group_limit(&queue, &group, jobs).await?;
            out.done(
                json!({"limit": jobs.max(1)}),
                format!(
                    "group {group:?} of queue {queue:?}: {} at once",
                    jobs.max(1)
                ),
            );
        }
        GroupsAction::Rate { queue, group, rate } => {
            let parsed = parse_rate(&rate)?;
            api.set_group_rate(&queue, &group, parsed).await?;
            let text = match parsed {
                Some((count, per)) => {
                    format!("at most {count} starts in any {}s", per.as_secs_f64())
                }
                None => "no rate".to_string(),
            };
            out.done(
                json!({"rate": parsed.map(|(count, per)| json!({"count": count, "per_secs": per.as_secs_f64()}))}),
                format!("group {group:?} of queue {queue:?}: {text}"),
            );
        }
    }
    Ok(())
}

/// Reads `COUNT/SECONDS` (seconds may have a fraction), or `none`.
fn parse_rate(text: &str) -> Result<Option<(u64, Duration)>, Error> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || {
        Error::Config(format!(
            "rate {text:?} is not COUNT/SECONDS (e.g. 100/60: at most 100 starts a minute) or none"
        ))
    };
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    let per: f64 = per
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| bad())?;
    if count == 0 || !(per > 0.0 && per.is_finite()) {
        return Err(bad());
    }
    Ok(Some((count, Duration::from_secs_f64(per))))
}
