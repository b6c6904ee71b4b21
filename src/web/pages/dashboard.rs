//! The Dashboard: totals, the live chart, history, the Redis panel and the largest queues.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};

use super::{Ctx, Web};
use crate::api::Stats;
use crate::api::span_text;

use super::queues::{DASHBOARD_QUEUES, largest, queue_table};
use super::*;

pub(in crate::web) async fn dashboard(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let stats = web.api.stats().await?;
    let days = params.days();
    let history = web.api.history(days, SystemTime::now()).await?;
    // A Redis that refuses INFO (a restricted ACL) leaves the panel out, not the page.
    let redis = web.api.redis_info().await.unwrap_or_default();
    let cards = cards(&stats);
    let chart = history_chart(&history);
    let base = &ctx.base;
    let body = html! {
        h1 { "Dashboard" }
        div.cards { @for (key, label, value) in cards { div.card { b data-stat=(key) { (value) } span { (label) } } } }
        section {
            h2 { "Live: jobs per second" }
            canvas #live width="900" height="220" data-api={ (base) "/api/stats" } aria-label="processed and failed per second, live" {}
            p.legend { span.processed { "■ processed" } " " span.failed { "■ failed" } " (sampled every 5 s, as servers flush their counters)" }
        }
        section {
            h2 { "History (UTC days)" }
            p.tabs { @for d in [7, 30, 90, 180] { a.active[d == days] href={ (ctx.home()) "?days=" (d) } { (d) " days" } } }
            (chart)
        }
        @if !redis.is_empty() {
            section {
                h2 { "Redis" }
                table.redis {
                    tbody {
                        tr { th { "address" } td { code { (ctx.source) } } }
                        @for (name, value) in &redis {
                            tr {
                                th { (redis_label(name)) }
                                td {
                                    @if name == "uptime_in_seconds" {
                                        (span_text(value.parse().unwrap_or(0.0)))
                                    } @else { (value) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Queues" }
            (queue_table(&ctx, &largest(&stats.queues, DASHBOARD_QUEUES), false))
            @if stats.queues.len() > DASHBOARD_QUEUES {
                p { "The " (DASHBOARD_QUEUES) " largest of " (stats.queues.len()) " queues; " a href={ (base) "/queues" } { "all queues" } "." }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Dashboard",
        "",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

/// How the Redis panel names an `INFO` field.
pub(super) fn redis_label(name: &str) -> &str {
    match name {
        "redis_version" => "version",
        "uptime_in_seconds" => "up for",
        "connected_clients" => "connected clients",
        "used_memory_human" => "memory used",
        "used_memory_peak_human" => "memory peak",
        "maxmemory_human" => "memory limit (0B: none)",
        "maxmemory_policy" => "eviction policy",
        other => other,
    }
}

pub(super) fn cards(stats: &Stats) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        ("processed", "processed", stats.processed),
        ("failed", "failed", stats.failed),
        ("discarded", "discarded", stats.discarded),
        ("busy", "busy", stats.busy),
        ("enqueued", "enqueued", stats.enqueued),
        ("scheduled", "scheduled", stats.scheduled),
        ("retries", "retries", stats.retries),
        ("dead", "dead", stats.dead),
        ("processes", "processes", stats.processes),
    ]
}

/// Processed and failed per day as an SVG line chart, oldest day on the left.
pub(super) fn history_chart(history: &[crate::api::DayStats]) -> Markup {
    let days: Vec<_> = history.iter().rev().collect();
    let processed: Vec<u64> = days.iter().map(|d| d.processed).collect();
    let failed: Vec<u64> = days.iter().map(|d| d.failed).collect();
    let first = days.first().map(|d| d.date.as_str()).unwrap_or("");
    let last = days.last().map(|d| d.date.as_str()).unwrap_or("");
    html! {
        (line_chart(
            (900.0, 200.0),
            &[("processed", &processed), ("failed", &failed)],
            (first, last),
            "a day",
            "processed and failed per day",
        ))
        details {
            summary { "Per day (" (history.len()) " days)" }
            table.compact {
                thead { tr { th { "date" } th { "processed" } th { "failed" } } }
                tbody { @for d in history { tr { td { (d.date) } td { (d.processed) } td { (d.failed) } } } }
            }
        }
    }
}

/// An SVG line chart of `lines` (CSS class, values), oldest on the left, labelled at both
/// ends, its top value per `unit`.
pub(super) fn line_chart(
    (w, h): (f64, f64),
    lines: &[(&str, &[u64])],
    (first, last): (&str, &str),
    unit: &str,
    label: &str,
) -> Markup {
    let pad = 30.0;
    let len = lines
        .iter()
        .map(|(_, values)| values.len())
        .max()
        .unwrap_or(0);
    let max = lines
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = if len > 1 {
        (w - 2.0 * pad) / (len - 1) as f64
    } else {
        0.0
    };
    let points = |values: &[u64]| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    pad + i as f64 * step,
                    h - pad - *v as f64 / max * (h - 2.0 * pad)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) class="axis" {}
            @for (class, values) in lines { polyline class=(class) points=(points(values)) {} }
            text x=(pad) y=(h - 8.0) { (first) }
            text x=(w - pad) y=(h - 8.0) text-anchor="end" { (last) }
            text x=(pad) y="16" { "max " (max as u64) " " (unit) }
        }
    }
}
