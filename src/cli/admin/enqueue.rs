//! `enqueue`: one job from the command line, its arguments and time read and checked.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::api::{Api, YEAR_10000};
use crate::client::Push;
use crate::error::Error;
use crate::job::builder::Job;
use crate::job::payload::Retry;

use super::*;

/// Reads `--at`: RFC 3339 (`Z` or an offset such as `+05:00`) or Unix seconds.
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && (0.0..YEAR_10000).contains(&secs))
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    // humantime reads only `Z`: an offset is taken off by hand.
    let split = text
        .len()
        .checked_sub(6)
        .filter(|&i| text.is_char_boundary(i));
    if let Some(i) = split
        && let (local, offset) = text.split_at(i)
        && let [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] = *offset.as_bytes()
        && [h1, h2, m1, m2].iter().all(u8::is_ascii_digit)
    {
        let hours = u64::from((h1 - b'0') * 10 + (h2 - b'0'));
        let minutes = u64::from((m1 - b'0') * 10 + (m2 - b'0'));
        let offset = Duration::from_secs(hours * 3_600 + minutes * 60);
        let local = humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?;
        return if sign == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
    }
    humantime::parse_rfc3339_weak(text).ok()
}

/// The job `psychiq enqueue` describes, or what is wrong with the input.
pub(super) fn job_to_enqueue(args: &EnqueueArgs) -> std::result::Result<Job, Failure> {
    let values: Value = serde_json::from_str(&args.args).map_err(|e| {
        Failure::BadInput(format!(
            "ARGS must be a JSON array, e.g. '[42, \"eur\"]' (quote it for the shell): {e}"
        ))
    })?;
    if !values.is_array() {
        return Err(Failure::BadInput(format!(
            "ARGS must be a JSON array, e.g. '[{}]', not {}",
            args.args, args.args
        )));
    }
    if args.class.trim().is_empty() {
        return Err(Failure::BadInput("CLASS must not be empty".into()));
    }
    if args.queue.trim().is_empty() {
        return Err(Failure::BadInput("--queue must not be empty".into()));
    }
    let job = if args.active_job {
        Job::active_job(args.class.clone(), values)
    } else {
        Job::new(args.class.clone(), values)
    };
    let mut job = job
        .map_err(|e| Failure::BadInput(e.to_string()))?
        .queue(args.queue.clone());
    if let Some(retry) = &args.retry {
        job = job.retry(match retry.as_str() {
            "true" => Retry::Default,
            "false" => Retry::Off,
            n => Retry::Max(n.parse().map_err(|_| {
                Failure::BadInput(format!("--retry takes a number, true or false, not {n:?}"))
            })?),
        });
    }
    if let Some(secs) = args.delay {
        if !(secs.is_finite() && (0.0..YEAR_10000 / 2.0).contains(&secs)) {
            return Err(Failure::BadInput(format!(
                "--in takes a number of seconds from now (e.g. 60), not {secs}"
            )));
        }
        job = job.delay(Duration::from_secs_f64(secs));
    }
    if let Some(secs) = args.expires_in {
        if !(secs.is_finite() && secs > 0.0 && secs < YEAR_10000 / 2.0) {
            return Err(Failure::BadInput(format!(
                "--expires-in takes a number of seconds after the job is due (e.g. 3600), not {secs}"
            )));
        }
        job = job.expires_in(Duration::from_secs_f64(secs));
    }
    if let Some(secs) = args.unique_for {
        // Ten years: a lock longer than that is a typo, and Redis's EX has a ceiling.
        const MOST: f64 = 10.0 * 365.0 * 86_400.0;
        if !(secs.is_finite() && (1.0..=MOST).contains(&secs)) {
            return Err(Failure::BadInput(format!(
                "--unique-for takes a number of seconds from 1 to {MOST:.0} (ten years), e.g. 600, not {secs}"
            )));
        }
        job = job.unique_for(Duration::from_secs_f64(secs));
    }
    if let Some(at) = &args.at {
        let time = parse_time(at).ok_or_else(|| {
            Failure::BadInput(format!(
                "--at {at:?}: use RFC 3339 (2026-11-28T09:00:00Z) or Unix seconds"
            ))
        })?;
        job = job.at(time);
    }
    Ok(job)
}

pub(super) async fn enqueue(api: &Api, out: &Out, args: &EnqueueArgs, job: Job) -> Outcome {
    let jid = match api.client().try_push(job).await? {
        Push::Duplicate(jid) => {
            out.done(
                json!({"jid": jid, "class": args.class, "queue": args.queue, "duplicate": true}),
                format!(
                    "not enqueued: the same {} job is locked by jid {jid} (which may have finished; `psychiq unique` shows its lock and `psychiq unique unlock KEY` lets it go)",
                    args.class
                ),
            );
            return Ok(());
        }
        Push::Refused(reason) => return Err(Error::NotPushed { reason }.into()),
        push => push.jid().unwrap_or_default().to_string(),
    };
    let place = if args.delay.is_some() || args.at.is_some() {
        "scheduled".to_string()
    } else {
        format!("queue {}", args.queue)
    };
    out.done(
        json!({"jid": jid, "class": args.class, "queue": args.queue}),
        format!("enqueued {} as {jid} ({place})", args.class),
    );
    Ok(())
}
