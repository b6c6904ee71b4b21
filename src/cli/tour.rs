//! `psychiq tour`: enqueues jobs of every demo kind, runs a server until they are done, and
//! prints what happened, including a failure that went to the retry set.
//!
//! With no Redis answering at the default address it starts a private, throwaway
//! `redis-server` on a free loopback port (and says so), so a first run needs nothing set up.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::ServerArgs;
use crate::store::config::RedisConfig;
use crate::{Client, Error, Job, NoArgs, Server};

/// The namespace the tour uses unless `-n` names one: its own, so the demo workers never
/// take the jobs of an app on the default (bare) keys.
const TOUR_NAMESPACE: &str = "psychiq-tour";

/// Runs the tour with the server flags given (`-n`, the Redis address, `-v`).
pub(crate) fn run(flags: &ServerArgs) -> ExitCode {
    let mut flags = flags.clone();
    if flags.redis.namespace.is_empty() {
        flags.redis.namespace = TOUR_NAMESPACE.to_string();
    }
    let flags = &flags;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // TERM or Ctrl-C ends the tour through its return path, so a throwaway Redis it started
    // is stopped by its Drop instead of outliving the process.
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = tour(flags) => result,
            _ = crate::server::signals::terminate() => Err(Error::Other("the tour was stopped".into())),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}{}", e.command_line_hint());
            ExitCode::FAILURE
        }
    }
}

/// A `redis-server` child that lives as long as the tour.
struct ThrowawayRedis {
    child: Child,
    config: RedisConfig,
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis the tour uses, and the throwaway server behind it if it had to start one.
async fn connect(flags: &ServerArgs) -> crate::Result<(Client, Option<ThrowawayRedis>)> {
    let config = flags.redis_config();
    let namespace = &flags.redis.namespace;
    let error = match Client::connect(&config, namespace).await {
        Ok(client) => return Ok((client, None)),
        Err(e) => e,
    };
    let unreachable = matches!(&error, Error::Redis { source, .. } if source.is_io_error() || source.is_connection_refusal());
    // Only the default address is replaced: an address the user named is theirs to fix.
    let defaulted = flags.redis.redis_url.is_none()
        && flags.redis.host == "localhost"
        && flags.redis.port == 6379;
    if !(unreachable && defaulted) {
        return Err(error);
    }
    let redis = start_throwaway_redis()?;
    println!(
        "No Redis answers at localhost:6379, so this tour started a throwaway redis-server at {} \
         (it keeps nothing and stops with the tour).\n",
        redis.config.display_address()
    );
    let started = Instant::now();
    loop {
        match Client::connect(&redis.config, namespace).await {
            Ok(client) => return Ok((client, Some(redis))),
            Err(e) if started.elapsed() > Duration::from_secs(5) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn start_throwaway_redis() -> crate::Result<ThrowawayRedis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| Error::Other(format!("cannot find a free loopback port: {e}")))?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::Other(if e.kind() == std::io::ErrorKind::NotFound {
                "no Redis answers at localhost:6379 and redis-server is not installed. Install it \
                 (`sudo apt-get install redis-server`, `brew install redis`) or point the tour at \
                 a Redis with --redis-url redis://HOST:PORT"
                    .to_string()
            } else {
                format!("no Redis answers at localhost:6379 and redis-server would not start: {e}")
            })
        })?;
    Ok(ThrowawayRedis {
        child,
        config: RedisConfig::from_parts("127.0.0.1", port, None),
    })
}

async fn tour(flags: &ServerArgs) -> crate::Result<()> {
    let (client, throwaway) = connect(flags).await?;
    let redis = match &throwaway {
        Some(redis) => redis.config.clone(),
        None => flags.redis_config(),
    };
    let config = flags
        .server_config()
        .redis(redis.clone())
        .poll_interval(Duration::from_millis(500));
    let echo_file = std::env::temp_dir().join(format!("psychiq-tour-{}.jsonl", std::process::id()));
    let echo_path = echo_file.to_string_lossy().to_string();
    let queue = config
        .queues
        .first()
        .map_or("default".to_string(), |q| q.name.clone());
    let on_queue = |job: Job| job.queue(queue.clone());

    println!(
        "Enqueuing into Redis {} (namespace {:?}, queue {queue:?}):",
        redis.display_address(),
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
    let pages = [
        "https://example.com/alpha",
        "https://example.com/beta",
        "https://example.com/gamma",
    ];
    let etl = crate::demo::etl::etl_workflow(&pages, &echo_path, &queue)?
        .push(&client)
        .await?;
    println!("  Workflow: fetch 3 pages in parallel, parse each, merge, notify   wid {etl}");
    // A burst of 1,000 pushes with one debounce key: one job, with the last one's words.
    let burst = (1..=1000)
        .map(|n| {
            Job::new(
                "Echo",
                (&echo_path, format!("debounced: push {n} of 1000, run once")),
            )
            .map(|job| on_queue(job).debounce("tour-burst", Duration::from_secs(1)))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let jids = client.push_bulk(burst).await?;
    let distinct: std::collections::BTreeSet<&String> = jids.iter().collect();
    println!(
        "  Echo  x1000 debounced  {} job (jid {})",
        distinct.len(),
        jids.last().map_or("", String::as_str)
    );
    // Two tenants: A's 10,000 jobs arrive first, then B's 10; each group runs five at once.
    let tenant_a = (0..10_000)
        .map(|_| Job::new("Noop", NoArgs).map(|job| on_queue(job).group("tenant-a").group_limit(5)))
        .collect::<crate::Result<Vec<_>>>()?;
    client.push_bulk(tenant_a).await?;
    let tenant_b = (1..=10)
        .map(|n| {
            Job::new("Echo", (&echo_path, format!("tenant B: job {n} of 10")))
                .map(|job| on_queue(job).group("tenant-b").group_limit(5))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    client.push_bulk(tenant_b).await?;
    println!("  Noop  x10000 tenant A  then Echo x10 tenant B (groups, five at once each)");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new(config.clone(), crate::demo::registry()).run_until(async move {
            let _ = stop_rx.await;
        }),
    );

    let started = Instant::now();
    let mut conn = client.redis_connection().expect("a Redis client");
    let retry_key = client.keys().retry();
    let api = crate::api::Api::connect(&redis, &config.namespace).await?;
    // Tenant A's backlog when tenant B's ten had all run.
    let mut a_left_when_b_done: Option<u64> = None;
    let failed_entry = loop {
        let text = std::fs::read_to_string(&echo_file).unwrap_or_default();
        let lines = text.lines().count();
        let a_left = api
            .groups(&queue, 10)
            .await?
            .iter()
            .find(|g| g.name == "tenant-a")
            .map_or(0, |g| g.backlog + g.running);
        if a_left_when_b_done.is_none() && text.matches("tenant B: job").count() == 10 {
            a_left_when_b_done = Some(a_left);
        }
        let retries: Vec<String> = redis::cmd("ZRANGE")
            .arg(&retry_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        let failed = retries.into_iter().find(|r| r.contains(&fail_jid));
        // Three Echo lines, the Sleep's, the scheduled Echo's, the workflow's notice, the
        // debounced burst's one line and tenant B's ten; and tenant A's last job.
        if lines >= 17 && failed.is_some() && a_left == 0 {
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
    server.await.map_err(|e| Error::Other(e.to_string()))??;

    println!(
        "\nPerformed in {:.1} s. Lines the Echo, Sleep and Etl::Notify jobs wrote to {echo_path}:",
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
    if let Some(left) = a_left_when_b_done {
        println!(
            "\nTenant B's 10 jobs all ran while tenant A still had {left} of its 10,000 to go: \
             groups take turns, so one tenant's backlog never holds up another's."
        );
    }
    if let Some(workflow) = api.workflow(&etl).await? {
        println!(
            "\nThe workflow {etl} {}: each step started once, after the steps it runs after:",
            workflow.state
        );
        let mut steps = workflow.steps;
        let stage = |name: &str| {
            ["fetch", "parse", "merge", "notify"]
                .iter()
                .position(|s| name.starts_with(s))
        };
        steps.sort_by_key(|s| (stage(&s.name), s.name.clone()));
        for step in &steps {
            println!(
                "  {:<8} {:<10} {}",
                step.name,
                step.state,
                if step.parents.is_empty() {
                    "first".to_string()
                } else {
                    format!("after {}", step.parents.join(", "))
                }
            );
        }
    }
    let mut counters = Vec::new();
    for name in ["processed", "failed"] {
        let key = client.keys().stat(name);
        let count: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        counters.push(format!("{key} = {}", count.unwrap_or(0)));
    }
    println!("Counters in Redis: {}", counters.join(", "));
    let _ = std::fs::remove_file(&echo_file);
    if throwaway.is_some() {
        println!(
            "\nThe throwaway Redis stops now, and its jobs with it. With a Redis of your own \
             running, `cargo run --release -- web` serves the dashboard at http://127.0.0.1:7433/ \
             (the workflow's graph at /workflows/WID)."
        );
    } else {
        let flags = same_redis_flags(flags);
        println!(
            "\nSee it all: `cargo run --release -- web {flags}`, then open http://127.0.0.1:7433/ \
             (the workflow's graph: http://127.0.0.1:7433/workflows/{etl}; or \
             `cargo run --release -- retries {flags}` in the terminal)."
        );
    }
    Ok(())
}

/// The flags that point an admin command at the Redis, db and namespace the tour used (a
/// URL is not repeated: it may hold a password, and `REDIS_URL` is read again anyway).
fn same_redis_flags(flags: &ServerArgs) -> String {
    let redis = &flags.redis;
    let mut out = Vec::new();
    if redis.redis_url.is_some() {
        out.push("--redis-url URL".to_string());
    } else {
        if redis.host != "localhost" {
            out.push(format!("-o {}", redis.host));
        }
        if redis.port != 6379 {
            out.push(format!("-p {}", redis.port));
        }
        if let Some(db) = redis.db {
            out.push(format!("-d {db}"));
        }
    }
    out.push(format!("-n {}", shell_word(&redis.namespace)));
    out.join(" ")
}

/// `word` as one shell word.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
