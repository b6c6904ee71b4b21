//! Trace context across the queue (feature `opentelemetry`): a job pushed inside a span
//! carries its `traceparent`, and a real server process (`examples/otel_server.rs`, with an
//! in-memory exporter) makes the job's span a child of it.
#![cfg(feature = "opentelemetry")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use psychiq::Job;
use serde_json::Value;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

fn example() -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("examples").join("otel_server");
    if !binary.exists() {
        let built = Command::new(env!("CARGO"))
            .args([
                "build",
                "--features",
                "opentelemetry",
                "--example",
                "otel_server",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(built.success());
    }
    binary
}

#[tokio::test]
async fn a_jobs_span_is_a_child_of_the_span_that_enqueued_it_in_another_process() {
    let ns = TestNs::new().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let request = tracing::info_span!("request");
    let request_cx = request.context();
    let request_span = request_cx.span();
    let (trace_id, span_id) = (
        request_span.span_context().trace_id().to_string(),
        request_span.span_context().span_id().to_string(),
    );
    ns.client
        .push(Job::new("Traced", ()).unwrap())
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let queued = ns.lrange(&ns.keys().queue("default")).await;
    let payload: Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!(
        payload[psychiq::otel::TRACEPARENT],
        format!("00-{trace_id}-{span_id}-01"),
        "{payload}"
    );

    let out = Command::new(example())
        .args(["--jobs", "1", "-n", &ns.namespace, "--redis-url", &ns.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || out.wait_with_output()),
    )
    .await
    .expect("the server ran the job and stopped")
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let job = spans
        .iter()
        .find(|s| s["name"] == "job")
        .unwrap_or_else(|| panic!("a job span in {spans:?}"));
    assert_eq!(job["trace_id"], trace_id.as_str(), "the same trace");
    assert_eq!(
        job["parent_span_id"],
        span_id.as_str(),
        "a child of the request span"
    );
}
