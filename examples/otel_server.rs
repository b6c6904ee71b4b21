//! A server whose jobs' spans go to an in-memory OpenTelemetry exporter, printed as JSON
//! lines when it stops: the test of trace propagation across processes runs it
//! (`tests/otel.rs`). Needs `--features opentelemetry`.
//!
//! `cargo run --features opentelemetry --example otel_server -- --jobs 1 -n NAMESPACE`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use psychiq::{JobResult, RedisConfig, Registry, Server, ServerConfig, Worker};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs inside its span and counts its runs. Class name `Traced`.
struct Traced(Arc<AtomicUsize>);

impl Worker for Traced {
    type Args = Vec<serde_json::Value>;
    async fn perform(&self, _: Self::Args) -> JobResult {
        tracing::info!("traced job running");
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Parser)]
struct Args {
    /// Stop after this many jobs
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Redis URL
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Key namespace (none: Sidekiq's bare keys)
    #[arg(short = 'n', long, default_value = "")]
    namespace: String,
}

#[tokio::main]
async fn main() -> psychiq::Result<()> {
    let args = Args::parse();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel_server")))
        .init();

    let done = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Traced(Arc::clone(&done)));
    let config = ServerConfig::default()
        .redis(RedisConfig::from_url(args.redis_url)?)
        .namespace(args.namespace);
    let handle = Server::new(config, registry).start().await?;
    while done.load(Ordering::SeqCst) < args.jobs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop();
    handle.stopped().await;
    let _ = provider.force_flush();
    for span in exporter.get_finished_spans().unwrap_or_default() {
        let line = serde_json::json!({
            "name": span.name,
            "trace_id": span.span_context.trace_id().to_string(),
            "span_id": span.span_context.span_id().to_string(),
            "parent_span_id": span.parent_span_id.to_string(),
        });
        println!("{line}");
    }
    Ok(())
}
