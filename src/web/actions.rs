//! The dashboard's state changes: POSTed forms, each checked against the anti-forgery token,
//! then a redirect (303) back to the list with a notice of what happened.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages::{WebError, segment, set_kind};
use super::{Ctx, Web, same_secret};
use crate::api::SetKind;

/// The fields of a posted form, in order (a field may repeat, e.g. `jid`).
type Fields = axum::Form<Vec<(String, String)>>;

/// Most jobs one request may act on.
const MAX_SELECTED: usize = 100;

pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The refusal to send when the form's token does not match the cookie's.
pub(super) fn forged(ctx: &Ctx, fields: &[(String, String)]) -> Option<Response> {
    match field(fields, "_csrf") {
        Some(token) if same_secret(token.as_bytes(), ctx.csrf.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale; reload the page and try again\n",
            )
                .into_response(),
        ),
    }
}

/// Redirects to `to`, where `notice` is shown once (kept on the server, named by an id).
pub(super) fn back(web: &Web, to: &str, notice: &str) -> Response {
    let location = format!("{to}?notice={}", web.notices.put(notice.to_string()));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

pub(super) fn bad(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

pub(super) async fn busy(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    axum::Form(fields): Fields,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let Some(identity) = field(&fields, "identity") else {
        return Ok(bad("which process? (identity is missing)"));
    };
    // Only a live process: an arbitrary name would push into an arbitrary key.
    if !web
        .api
        .processes()
        .await?
        .iter()
        .any(|p| p.identity == identity)
    {
        return Ok(bad(
            "no live process has that identity; reload the Busy page",
        ));
    }
    let to = format!("{}/busy", ctx.base);
    match field(&fields, "action") {
        Some("quiet") => web.api.quiet(identity).await?,
        Some("stop") => web.api.stop(identity).await?,
        _ => return Ok(bad("action must be quiet or stop")),
    }
    Ok(back(
        &web,
        &to,
        &format!(
            "Asked {identity} to {}; it obeys within 5 s.",
            field(&fields, "action").unwrap_or("")
        ),
    ))
}

pub(super) async fn queue(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    axum::Form(fields): Fields,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let to = format!("{}/queues/{}", ctx.base, segment(&name));
    let queue = web.api.queue(&name);
    match field(&fields, "action") {
        Some("clear") => {
            let count = queue.clear().await?;
            Ok(back(
                &web,
                &format!("{}/queues", ctx.base),
                &format!("Cleared {name}: {count} jobs deleted."),
            ))
        }
        Some("delete") => {
            let Some(jid) = field(&fields, "jid") else {
                return Ok(bad("which job? (jid is missing)"));
            };
            let deleted = match queue.find(jid).await? {
                Some(job) => job.delete().await?,
                None => false,
            };
            Ok(back(
                &web,
                &to,
                &if deleted {
                    format!("Deleted {jid}.")
                } else {
                    format!("{jid} had already left the queue.")
                },
            ))
        }
        Some("pause") => {
            queue.pause().await?;
            Ok(back(
                &web,
                &to,
                &format!("Paused {name}: servers take none of its jobs from their next fetch."),
            ))
        }
        Some("unpause") => {
            queue.unpause().await?;
            Ok(back(
                &web,
                &to,
                &format!("Resumed {name}: servers take its jobs again."),
            ))
        }
        _ => Ok(bad("action must be delete, clear, pause or unpause")),
    }
}

pub(super) async fn set(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    axum::Form(fields): Fields,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let Some(kind) = set_kind(&name) else {
        return Ok((StatusCode::NOT_FOUND, "no such set\n").into_response());
    };
    let to = format!("{}/{name}", ctx.base);
    let set = web.api.set(kind);
    let action = field(&fields, "action").unwrap_or("");
    let notice = match action {
        "retry_all" if kind != SetKind::Scheduled => {
            format!("{} jobs are back on their queues.", set.retry_all().await?)
        }
        "delete_all" => format!("Deleted {} jobs.", set.clear().await?),
        "kill_all" if kind != SetKind::Dead => {
            format!("Moved {} jobs to the dead set.", set.kill_all().await?)
        }
        "retry" | "add" | "delete" | "kill" => {
            // SCORE-JID keys, each found with one ZRANGE BYSCORE; at most a few pages' worth.
            let mut keys: Vec<&str> = fields
                .iter()
                .filter(|(k, _)| k == "key" || k == "jid")
                .map(|(_, v)| v.as_str())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys.truncate(MAX_SELECTED);
            if keys.is_empty() {
                return Ok(back(&web, &to, "Select at least one job first."));
            }
            let mut done = 0;
            let mut unmovable = 0;
            for key in &keys {
                let Some(job) = set.find(key).await? else {
                    continue;
                };
                let moved = match action {
                    "retry" => job.retry_now().await,
                    "add" => job.add_to_queue().await,
                    "delete" => job.delete().await,
                    _ => job.kill().await,
                };
                match moved {
                    Ok(ok) => done += usize::from(ok),
                    // Not JSON: it cannot be queued, only deleted.
                    Err(crate::error::Error::Payload(_)) => unmovable += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            let verb = match action {
                "retry" | "add" => "put back on their queues",
                "delete" => "deleted",
                _ => "moved to the dead set",
            };
            let missed = keys.len() - done - unmovable;
            let mut notice = format!("{done} jobs {verb}.");
            if missed > 0 {
                notice += &format!(" {missed} had already moved.");
            }
            if unmovable > 0 {
                notice += &format!(" {unmovable} are not JSON and can only be deleted.");
            }
            notice
        }
        _ => return Ok(bad("unknown action for this set")),
    };
    Ok(back(&web, &to, &notice))
}

/// Lets a unique job's lock go (the Unlock button of a job's page), then back to that page.
pub(super) async fn unlock_unique(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    axum::Form(fields): Fields,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let Some(key) = field(&fields, "key") else {
        return Ok(bad("which lock? (key is missing)"));
    };
    // Back to the page the button was on, and only to a page of this dashboard.
    let home = format!("{}/", ctx.base);
    let to = match field(&fields, "from") {
        // No `//` nor `\`, which browsers read as `/`: never another site.
        Some(from) if from.starts_with(&home) && !from.contains("//") && !from.contains('\\') => {
            from.to_string()
        }
        _ => home,
    };
    let notice = if web.api.unlock_unique(key).await? {
        format!("Unlocked {key}: the same job can be pushed again.")
    } else {
        format!("{key} was not locked (any more).")
    };
    Ok(back(&web, &to, &notice))
}
