//! Busy: the processes with Quiet and Stop, and the jobs running now.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use maud::html;

use super::{Ctx, Web};
use crate::api::span_text;

use super::*;

pub(in crate::web) async fn busy(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let processes = web.api.processes().await?;
    let running = web.api.running_of(&processes).await?;
    let jids: Vec<&str> = running
        .iter()
        .filter_map(|w| w.payload["jid"].as_str())
        .collect();
    let progress = web.api.progress_of(&jids).await?;
    let now = crate::clock::now_secs();
    let base = &ctx.base;
    let body = html! {
        h1 { "Busy" }
        h2 { "Processes (" (processes.len()) ")" }
        table {
            thead { tr { th { "identity" } th { "tag" } th { "queues" } th { "busy" } th { "rss" } th { "started" } th { "last beat" } th { "state" } th {} } }
            tbody {
                @for p in &processes {
                    tr {
                        td { code { (p.identity) } }
                        td { (p.info["tag"].as_str().unwrap_or("")) }
                        td { (p.queues_text()) }
                        td { (p.busy) " / " (p.info["concurrency"].as_u64().unwrap_or(0)) }
                        td { (format!("{:.1} MB", p.rss as f64 / 1024.0)) }
                        td { (span_text(now - p.info["started_at"].as_f64().unwrap_or(now))) " ago" }
                        td { (span_text(now - p.beat)) " ago" }
                        td { @if p.quiet { span.badge.quiet { "quiet" } } @else { span.badge { "running" } } }
                        td.actions {
                            form method="post" action={ (base) "/busy" } {
                                (csrf_field(&ctx))
                                input type="hidden" name="identity" value=(p.identity);
                                @if !p.quiet { button name="action" value="quiet" { "Quiet" } }
                                button.danger name="action" value="stop" { "Stop" }
                            }
                        }
                    }
                }
                @if processes.is_empty() { tr { td colspan="9" { "No live processes." } } }
            }
        }
        h2 { "Running jobs (" (running.len()) ")" }
        table {
            thead { tr { th { "process" } th { "slot" } th { "jid" } th { "queue" } th { "class" } th { "args" } th { "started" } th { "progress" } th {} } }
            tbody {
                @for w in &running {
                    tr {
                        td { code { (w.process) } }
                        td { (w.thread) }
                        td { @let jid = w.payload["jid"].as_str().unwrap_or(""); a href={ (base) "/jobs/" (segment(jid)) } { code { (jid) } } }
                        td { (w.queue) }
                        td { (w.payload["wrapped"].as_str().or(w.payload["class"].as_str()).unwrap_or("")) }
                        td { code { (w.payload["args"].to_string()) } }
                        td { (span_text(now - w.run_at)) " ago" }
                        td {
                            @if let Some(p) = w.payload["jid"].as_str().and_then(|jid| progress.get(jid)) {
                                (job_progress(p))
                            }
                        }
                        td.actions {
                            @let jid = w.payload["jid"].as_str().unwrap_or("");
                            form method="post" action={ (base) "/jobs/" (segment(jid)) "/cancel" } {
                                (csrf_field(&ctx))
                                input type="hidden" name="back" value="busy";
                                button.danger { "Cancel" }
                            }
                        }
                    }
                }
                @if running.is_empty() { tr { td colspan="9" { "Nothing running." } } }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Busy",
        "busy",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}
