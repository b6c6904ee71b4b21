//! The demo server: five workers that users, tests and benchmarks rely on.
//!
//! - `Noop`: does nothing.
//! - `Echo [path, ...]`: appends its whole `args` array as one line of JSON to `path`.
//! - `Fail [message]`: fails with `message`.
//! - `Sleep [ms, path?]`: sleeps `ms` milliseconds, then appends its args to `path` if given.
//! - `Panic [message]`: panics with `message`.
//!
//! `cargo run --release --example demo -- [flags]` runs a server until TERM/INT.
//! `cargo run --release --example demo -- --tour` enqueues a few jobs, runs them, and prints
//! what happened, including a failure that went to the retry set.

use std::time::{Duration, Instant};

use clap::Parser;
use psychiq::cli::ServerArgs;
use psychiq::{Client, Job, NoArgs, Server};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "demo",
    version,
    about = "Psychiq demo server with the Noop, Echo, Fail, Sleep and Panic workers"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Enqueue a few jobs, run them, print what happened, and exit
    #[arg(long)]
    tour: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.tour && !args.server.verbose && std::env::var_os("RUST_LOG").is_none() {
        // The tour prints its own summary; per-job lines would drown it.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(std::io::stderr)
            .init();
    } else {
        args.server.init_logging();
    }
    let result = if args.tour {
        tour(&args.server).await
    } else {
        Server::new(args.server.server_config(), psychiq::demo::registry())
            .run()
            .await
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Enqueues jobs of every kind, runs a server until they are done, and prints a summary.
async fn tour(flags: &ServerArgs) -> psychiq::Result<()> {
    let config = flags
        .server_config()
        .poll_interval(Duration::from_millis(500));
    let client = Client::connect(&config.redis, &config.namespace).await?;
    let echo_file = std::env::temp_dir().join(format!("psychiq-tour-{}.jsonl", std::process::id()));
    let echo_path = echo_file.to_string_lossy().to_string();
    let queue = config
        .queues
        .first()
        .map_or("default".to_string(), |q| q.name.clone());
    let on_queue = |job: Job| job.queue(queue.clone());

    println!(
        "Enqueuing into Redis {} (namespace {:?}, queue {queue:?}):",
        config.redis.display_address(),
        config.namespace
    );
    for word in ["hello", "héllo wörld ✓", "<b>bold</b>"] {
        let jid = client
            .push(on_queue(Job::new("Echo", (&echo_path, word))?))
            .await?;
        println!("  Echo  {word:<16} jid {jid}");
    }
    let bulk = (0..1000)
        .map(|_| on_queue(Job::new("Noop", NoArgs).expect("[] is an array")))
        .collect();
    println!(
        "  Noop  x1000 (bulk)     {} jids",
        client.push_bulk(bulk).await?.len()
    );
    let jid = client
        .push(on_queue(Job::new(
            "Sleep",
            (300, &echo_path, "slept 300 ms"),
        )?))
        .await?;
    println!("  Sleep 300 ms           jid {jid}");
    let jid = client
        .push(on_queue(
            Job::new("Echo", (&echo_path, "scheduled 2 s later"))?.delay(Duration::from_secs(2)),
        ))
        .await?;
    println!("  Echo  in 2 s           jid {jid}");
    let fail_jid = client
        .push(on_queue(Job::new("Fail", ("card declined",))?))
        .await?;
    println!("  Fail  card declined    jid {fail_jid}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new(config.clone(), psychiq::demo::registry()).run_until(async move {
            let _ = stop_rx.await;
        }),
    );

    let started = Instant::now();
    let mut conn = client.redis_connection().expect("a Redis client");
    let retry_key = client.keys().retry();
    let failed_entry = loop {
        let lines = std::fs::read_to_string(&echo_file)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let retries: Vec<String> = redis::cmd("ZRANGE")
            .arg(&retry_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| psychiq::Error::Other(e.to_string()))?;
        let failed = retries.into_iter().find(|r| r.contains(&fail_jid));
        if lines >= 5 && failed.is_some() {
            break failed;
        }
        if started.elapsed() > Duration::from_secs(30) {
            println!(
                "\nNot everything ran within 30 s (is another server taking this queue's jobs?)"
            );
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(());
    server
        .await
        .map_err(|e| psychiq::Error::Other(e.to_string()))??;

    println!(
        "\nPerformed in {:.1} s. Lines the Echo and Sleep jobs wrote to {echo_path}:",
        started.elapsed().as_secs_f64()
    );
    for line in std::fs::read_to_string(&echo_file)
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
    if let Some(entry) = failed_entry {
        let job: Value = serde_json::from_str(&entry).unwrap_or_default();
        println!(
            "\nThe Fail job is in the retry set ({}): error_class={} error_message={:?} retry_count={}",
            retry_key,
            job["error_class"],
            job["error_message"].as_str().unwrap_or(""),
            job["retry_count"]
        );
    }
    let processed: Option<u64> = redis::cmd("GET")
        .arg(client.keys().stat("processed"))
        .query_async(&mut conn)
        .await
        .ok()
        .flatten();
    let failed: Option<u64> = redis::cmd("GET")
        .arg(client.keys().stat("failed"))
        .query_async(&mut conn)
        .await
        .ok()
        .flatten();
    println!(
        "Counters in Redis: {} = {}, {} = {}",
        client.keys().stat("processed"),
        processed.unwrap_or(0),
        client.keys().stat("failed"),
        failed.unwrap_or(0)
    );
    println!(
        "\nSee it all: `cargo run --release --bin psychiq -- web -n {ns}`, then open http://127.0.0.1:7433/ \
         (or `cargo run --release --bin psychiq -- retries -n {ns}` in the terminal).",
        ns = client.keys().namespace()
    );
    let _ = std::fs::remove_file(&echo_file);
    Ok(())
}
