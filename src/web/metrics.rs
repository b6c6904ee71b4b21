//! `/metrics`: Prometheus' text format (version 0.0.4).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Web;
use super::pages::WebError;
use crate::api::{ClassMetrics, Stats};
use crate::server::stats::DURATION_BUCKETS;

/// Queues given series of their own in a scrape: the largest.
const MAX_QUEUE_SERIES: usize = 1_000;

/// Escapes a label value: control characters first (a carriage return breaks parsers such
/// as Python's `prometheus_client`), then backslash, double quote and newline.
fn label(value: &str) -> String {
    crate::job::text::printable(value)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) async fn metrics(State(web): State<Arc<Web>>) -> Result<impl IntoResponse, WebError> {
    let stats = web.api.stats().await?;
    let classes = web.api.class_metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&stats, &classes),
    ))
}

/// A metric with one sample per label set: `NAME{LABELS} VALUE` lines under its HELP/TYPE.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The exposition text for these figures.
pub(crate) fn render(stats: &Stats, classes: &[ClassMetrics]) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "psychiq_processed_total",
        "counter",
        "Jobs run, failures included.",
        stats.processed as f64,
    );
    gauge(
        "psychiq_failed_total",
        "counter",
        "Jobs that failed.",
        stats.failed as f64,
    );
    gauge(
        "psychiq_discarded_total",
        "counter",
        "Jobs dropped without failing: expired, or discarded by the job or a middleware.",
        stats.discarded as f64,
    );
    gauge(
        "psychiq_busy",
        "gauge",
        "Jobs running now in live processes.",
        stats.busy as f64,
    );
    gauge(
        "psychiq_processes",
        "gauge",
        "Live server processes.",
        stats.processes as f64,
    );
    gauge(
        "psychiq_scheduled",
        "gauge",
        "Jobs in the scheduled set.",
        stats.scheduled as f64,
    );
    gauge(
        "psychiq_retries",
        "gauge",
        "Jobs in the retry set.",
        stats.retries as f64,
    );
    gauge(
        "psychiq_dead",
        "gauge",
        "Jobs in the dead set.",
        stats.dead as f64,
    );
    // One series per queue, for the largest: a hundred thousand queues must not make every
    // scrape megabytes long.
    let mut largest: Vec<&crate::api::QueueSummary> = stats.queues.iter().collect();
    if largest.len() > MAX_QUEUE_SERIES {
        largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
        largest.truncate(MAX_QUEUE_SERIES);
    }
    gauge(
        "psychiq_queues",
        "gauge",
        "Queues known (those with their own series below are the largest, at most 1000).",
        stats.queues.len() as f64,
    );
    family(
        &mut out,
        "psychiq_queue_size",
        "gauge",
        "Jobs waiting in a queue.",
        largest
            .iter()
            .map(|q| (format!("queue=\"{}\"", label(&q.name)), q.size as f64)),
    );
    family(
        &mut out,
        "psychiq_queue_latency_seconds",
        "gauge",
        "How long the oldest job of a queue has waited.",
        largest
            .iter()
            .map(|q| (format!("queue=\"{}\"", label(&q.name)), q.latency)),
    );
    family(
        &mut out,
        "psychiq_queue_paused",
        "gauge",
        "1 while a queue is paused (no server takes its jobs).",
        largest.iter().map(|q| {
            let paused = if q.paused { 1.0 } else { 0.0 };
            (format!("queue=\"{}\"", label(&q.name)), paused)
        }),
    );
    family(
        &mut out,
        "psychiq_job_failures_total",
        "counter",
        "Failed runs per class.",
        classes
            .iter()
            .map(|c| (format!("class=\"{}\"", label(&c.class)), c.failed as f64)),
    );
    let _ = writeln!(
        out,
        "# HELP psychiq_job_duration_seconds Time in perform per class.\n# TYPE psychiq_job_duration_seconds histogram"
    );
    for c in classes {
        let class = label(&c.class);
        let mut cumulative = 0;
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += c.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "psychiq_job_duration_seconds_bucket{{class=\"{class}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "psychiq_job_duration_seconds_bucket{{class=\"{class}\",le=\"+Inf\"}} {}",
            c.count
        );
        let _ = writeln!(
            out,
            "psychiq_job_duration_seconds_sum{{class=\"{class}\"}} {}",
            c.secs
        );
        let _ = writeln!(
            out,
            "psychiq_job_duration_seconds_count{{class=\"{class}\"}} {}",
            c.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let stats = Stats {
            processed: 3,
            failed: 1,
            discarded: 2,
            enqueued: 0,
            scheduled: 0,
            retries: 0,
            dead: 0,
            processes: 1,
            busy: 0,
            default_queue_latency: 0.0,
            queues: vec![],
        };
        let mut buckets = vec![0; DURATION_BUCKETS.len() + 1];
        buckets[0] = 2;
        buckets[3] = 1;
        let class = ClassMetrics {
            class: "Evil\"Job".into(),
            count: 3,
            failed: 1,
            secs: 0.03,
            buckets,
        };
        let text = render(&stats, &[class]);
        assert!(text.contains("psychiq_processed_total 3\n"));
        assert!(text.contains("psychiq_discarded_total 2\n"));
        assert!(text.contains(
            "psychiq_job_duration_seconds_bucket{class=\"Evil\\\"Job\",le=\"0.001\"} 2\n"
        ));
        assert!(text.contains(
            "psychiq_job_duration_seconds_bucket{class=\"Evil\\\"Job\",le=\"0.025\"} 3\n"
        ));
        assert!(text.contains(
            "psychiq_job_duration_seconds_bucket{class=\"Evil\\\"Job\",le=\"+Inf\"} 3\n"
        ));
    }
}
