//! Classes: runs and failures per worker class, charted over a chosen range.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::extract::{Query, State};
use maud::html;

use super::{Ctx, Web};

use super::dashboard::line_chart;
use super::*;

/// The ranges the Classes page charts: label, seconds.
pub(super) const CLASS_RANGES: [(&str, u64); 5] = [
    ("1h", 3_600),
    ("3h", 3 * 3_600),
    ("8h", 8 * 3_600),
    ("24h", 24 * 3_600),
    ("72h", 72 * 3_600),
];
/// Classes charted at most (the busiest).
pub(super) const CHARTED_CLASSES: usize = 12;

pub(in crate::web) async fn classes(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let metrics = web.api.class_metrics().await?;
    let (range, range_secs) = CLASS_RANGES
        .iter()
        .copied()
        .find(|(name, _)| params.range.as_deref() == Some(*name))
        .unwrap_or(CLASS_RANGES[0]);
    let series = web
        .api
        .class_series(Duration::from_secs(range_secs), SystemTime::now())
        .await?;
    let clock = |secs: u64| crate::api::utc_text(secs as f64);
    let first = series.starts.first().map(|s| clock(*s)).unwrap_or_default();
    let last = series.starts.last().map(|s| clock(*s)).unwrap_or_default();
    let per = if series.step_secs == 60 {
        "a minute"
    } else {
        "per 10 minutes"
    };
    let ms = |secs: f64| {
        if secs.is_infinite() {
            "> 300 s".to_string()
        } else if secs >= 1.0 {
            format!("{secs:.2} s")
        } else {
            format!("{:.2} ms", secs * 1000.0)
        }
    };
    let body = html! {
        h1 { "Classes" }
        section {
            h2 { "Over time (UTC)" }
            p.tabs { @for (name, _) in CLASS_RANGES { a.active[name == range] href={ (ctx.base) "/classes?range=" (name) } { (name) } } }
            p.legend { span.processed { "■ runs" } " " span.failed { "■ failures" } " " (per) ", from the per-minute metrics every server writes (Sidekiq 7/8's Metrics tab reads the same keys)" }
            @for c in series.classes.iter().take(CHARTED_CLASSES) {
                div.class-series {
                    @let (runs, failed, mean) = c.totals();
                    h3 {
                        (c.class) " · " (runs) " runs, " (failed) " failed"
                        @if let Some(mean) = mean { ", mean " (format!("{mean:.1}")) " ms" }
                    }
                    (line_chart((900.0, 120.0), &[("processed", &c.runs), ("failed", &c.failed)], (&first, &last), per, "runs and failures over time"))
                }
            }
            @if series.classes.is_empty() { p { "No job ran in this range." } }
        }
        h2 { "Since the metrics began" }
        p { "Runs of " code { "perform" } " per worker class, summed over every server since the metrics began. p95 is the upper bound of the histogram bucket holding the 95th percentile." }
        table {
            thead { tr { th { "class" } th { "runs" } th { "failed" } th { "failure rate" } th { "mean" } th { "p95 ≤" } } }
            tbody {
                @for m in &metrics {
                    tr {
                        td { (m.class) }
                        td { (m.count) }
                        td { (m.failed) }
                        td { (format!("{:.1}%", if m.count == 0 { 0.0 } else { m.failed as f64 * 100.0 / m.count as f64 })) }
                        td { (ms(m.mean())) }
                        td { (ms(m.p95())) }
                    }
                }
                @if metrics.is_empty() { tr { td colspan="6" { "No job has run yet." } } }
            }
        }
    };
    Ok(layout(&ctx, "Classes", "classes", true, None, body))
}
