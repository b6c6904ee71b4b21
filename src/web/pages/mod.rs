//! The dashboard's pages, rendered with maud (which escapes every value it prints).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, Web};
use crate::api::{JobRecord, SetKind};
use crate::error::Error;

/// Jobs shown on one page.
mod busy;
mod classes;
mod dashboard;
mod jobs;
mod queues;

pub(super) use busy::busy;
pub(super) use classes::classes;
pub(super) use dashboard::dashboard;
pub(super) use jobs::{queue_job, set, set_job};
pub(super) use queues::{queue, queues};

pub(super) const PER_PAGE: u64 = 25;
/// The highest page number a URL may ask for.
const MAX_PAGE: u64 = 100_000;
/// The longest search text taken from a URL.
const MAX_SEARCH: usize = 200;

/// A Redis failure shown as a page that says what to do.
pub(crate) struct WebError(pub Error);

impl From<Error> for WebError {
    fn from(e: Error) -> WebError {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Error::NotFound(message) = &self.0 {
            return (StatusCode::NOT_FOUND, format!("{message}\n")).into_response();
        }
        let body = html! {
            (DOCTYPE)
            html { head { meta charset="utf-8"; title { "Psychiq: Redis unavailable" } }
            body { h1 { "Redis error" } p { (self.0.to_string()) } p { "Reload when that is mended." } } }
        };
        (StatusCode::SERVICE_UNAVAILABLE, Html(body.into_string())).into_response()
    }
}

pub(super) type Page = Result<Html<String>, WebError>;

/// Query parameters, read leniently and bounded.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    page: Option<String>,
    q: Option<String>,
    days: Option<String>,
    /// The Classes page's range (`1h` … `72h`).
    range: Option<String>,
    pub(super) notice: Option<String>,
}

impl Params {
    fn page(&self) -> u64 {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_PAGE)
    }
    fn search(&self) -> Option<String> {
        let q = self.q.as_deref()?.trim();
        (!q.is_empty()).then(|| q.chars().take(MAX_SEARCH).collect())
    }
    fn days(&self) -> u32 {
        self.days
            .as_deref()
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(30)
            .clamp(1, 180)
    }
}

/// Percent-encodes a path segment (queue names and jids may hold anything).
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn set_kind(name: &str) -> Option<SetKind> {
    match name {
        "scheduled" => Some(SetKind::Scheduled),
        "retries" => Some(SetKind::Retry),
        "dead" => Some(SetKind::Dead),
        _ => None,
    }
}

fn set_title(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Scheduled => "Scheduled",
        SetKind::Retry => "Retries",
        SetKind::Dead => "Dead",
    }
}

pub(super) fn layout(
    ctx: &Ctx,
    title: &str,
    active: &str,
    live: bool,
    notice: Option<String>,
    body: Markup,
) -> Html<String> {
    let base = &ctx.base;
    let nav = [
        ("", "Dashboard"),
        ("busy", "Busy"),
        ("queues", "Queues"),
        ("retries", "Retries"),
        ("scheduled", "Scheduled"),
        ("dead", "Dead"),
        ("classes", "Classes"),
        ("periodic", "Periodic"),
        ("limits", "Limits"),
        ("batches", "Batches"),
        ("groups", "Groups"),
        ("workflows", "Workflows"),
        ("iterations", "Iterations"),
    ];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Psychiq" }
                link rel="stylesheet" href={ (base) "/assets/app.css" };
                link rel="icon" href="data:,";
                script src={ (base) "/assets/app.js" } defer {}
            }
            body data-base=(base) {
                header {
                    a.brand href=(ctx.home()) { "Psychiq" }
                    nav {
                        @for (path, label) in nav {
                            @if path.is_empty() {
                                a.active[active == path] href=(ctx.home()) { (label) }
                            } @else {
                                a.active[active == path] href={ (base) "/" (path) } { (label) }
                            }
                        }
                    }
                    form.find method="get" action={ (base) "/jobs" } role="search" {
                        input type="search" name="jid" placeholder="find a job by jid" aria-label="Find a job by jid" maxlength="100";
                    }
                    span.source title="Redis, database and namespace" { (ctx.source) }
                    div.strip {
                        @for (key, label) in [("processed", "processed"), ("failed", "failed"), ("busy", "busy"), ("enqueued", "enqueued"), ("retries", "retries"), ("dead", "dead")] {
                            span { b data-stat=(key) { "…" } " " (label) }
                        }
                    }
                }
                main data-live[live] {
                    @if let Some(notice) = notice { p.notice role="status" { (notice) } }
                    (body)
                }
                footer { "Psychiq " (env!("CARGO_PKG_VERSION")) " · namespace-aware, Sidekiq-compatible" }
            }
        }
    };
    Html(page.into_string())
}

/// A running job's progress: a bar when the total is known, then `done/total message`.
pub(super) fn job_progress(p: &crate::status::Progress) -> Markup {
    html! {
        @if p.total > 0 { progress max=(p.total) value=(p.done) {} " " }
        (p.done) @if p.total > 0 { "/" (p.total) } " " (p.message)
    }
}

pub(super) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

fn pager(ctx: &Ctx, path: &str, page: u64, total: u64, search: Option<&str>) -> Markup {
    let pages = total.div_ceil(PER_PAGE).max(1);
    let link = |p: u64| {
        let mut url = format!("{}/{path}?page={p}", ctx.base);
        if let Some(q) = search {
            url += &format!("&q={}", segment(q));
        }
        url
    };
    html! {
        nav.pager {
            @if page > 1 { a href=(link(page - 1)) { "← newer" } }
            span { "page " (page) " of " (pages) " · " (total) " jobs" }
            @if page < pages { a href=(link(page + 1)) { "older →" } }
        }
    }
}

/// Sidekiq's `SCORE-JID` key of a job in a set: found again with one `ZRANGE … BYSCORE`.
pub(super) fn job_key(job: &JobRecord) -> String {
    format!("{}-{}", job.score().unwrap_or(0.0), job.jid())
}

/// The arguments, or for a payload that is not a JSON object (or not UTF-8) the stored
/// text itself, escaped, so it can be recognised before it is deleted.
fn args_text(job: &JobRecord) -> String {
    let text = match job.item() {
        Some(_) => job.display_args(),
        None => crate::job::text::printable(job.raw()).into_owned(),
    };
    if text.chars().count() > 120 {
        text.chars().take(119).chain(['…']).collect()
    } else {
        text
    }
}

pub(super) async fn api_stats(State(web): State<Arc<Web>>) -> Result<Json<Value>, WebError> {
    let s = web.api.stats().await?;
    Ok(Json(json!({
        "processed": s.processed, "failed": s.failed, "discarded": s.discarded, "busy": s.busy, "enqueued": s.enqueued,
        "scheduled": s.scheduled, "retries": s.retries, "dead": s.dead, "processes": s.processes,
        "default_queue_latency": s.default_queue_latency, "at": crate::clock::now_secs(),
    })))
}

pub(super) async fn api_history(
    State(web): State<Arc<Web>>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, WebError> {
    let history = web.api.history(params.days(), SystemTime::now()).await?;
    Ok(Json(json!(history)))
}

pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../assets/app.css"),
    )
}

pub(super) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../assets/app.js"),
    )
}

pub(super) async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    let body = html! { h1 { "Not found" } p { a href=(ctx.home()) { "Dashboard" } } };
    (
        StatusCode::NOT_FOUND,
        layout(&ctx, "Not found", "", false, None, body),
    )
        .into_response()
}
