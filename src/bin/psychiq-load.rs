//! `psychiq-load`: a load test in the spirit of Sidekiq's `bin/sidekiqload`.
//!
//! In a fresh namespace it measures enqueue rates (bulk, single from one task, single from
//! 32 tasks), then starts the real `psychiq` server as a child process and times the drain
//! of N no-op jobs (from the server's registration, so boot is excluded), with the server's
//! CPU and peak RSS (from /proc), Redis's CPU and commands per job (`INFO cpu`,
//! `INFO commandstats`), the idle server's Redis commands per second and RSS, and the
//! enqueue-to-start latency of a trickle of timed jobs on the idle server.
//!
//! It also measures the pipelined Redis job floor (`LPUSH` + `RPOP` + `INCR` a job, 1,000 jobs
//! a pipeline) to compare the drain with, and with `--ruby` drains with Ruby Sidekiq
//! instead, measured the same way (on bare keys, in a Redis of its own).
//!
//! `cargo run --release --bin psychiq-load -- [--jobs 100000] [-c 25] [--workload noop|ingest|mixed] [--ruby] [--redis-url URL]`

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use psychiq::RedisConnection;
use psychiq::demo::Order;
use psychiq::{Client, Job, NoArgs, RedisConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Load test: enqueue and drain no-op jobs with the psychiq server, and report rates, CPU, memory, Redis commands and latency"
)]
struct Args {
    /// No-op jobs to enqueue in bulk and drain
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Server concurrency
    #[arg(short = 'c', long, default_value_t = 25)]
    concurrency: u32,
    /// Jobs for each single-enqueue rate
    #[arg(long, default_value_t = 10_000)]
    singles: usize,
    /// Timed jobs for the latency figures
    #[arg(long, default_value_t = 200)]
    trickle: usize,
    /// Seconds the idle server is watched
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Server processes to start
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Queues the jobs are spread over (all of weight 1 when more than one)
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Drain `Sleep` jobs of this many milliseconds instead of `Noop`
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// What the drained jobs are: noop; ingest (a 1 KB JSON order read into a struct); mixed
    /// (90% Noop, 10% Sleep 50 ms)
    #[arg(long, value_enum, default_value_t = Workload::Noop)]
    workload: Workload,
    /// Drain with Ruby Sidekiq (`sidekiq -r bench/sidekiq_workers.rb`) instead of psychiq,
    /// on bare keys: needs an empty Redis of its own (bench/compare.sh starts one), which
    /// is flushed at the end
    #[arg(long)]
    ruby: bool,
    /// The Ruby Sidekiq command for --ruby (default `sidekiq`, Debian's 6.4.1), e.g.
    /// "../shared/peers/ruby-sidekiq 8 --server" for Sidekiq 8.0.10
    #[arg(long, requires = "ruby")]
    ruby_cmd: Option<String>,
    /// The server's log level: warn (no per-job lines), or default (what the server logs
    /// unless told otherwise: a start and a done line per job), written to a file
    #[arg(long, value_enum, default_value_t = LogLevel::Warn)]
    log: LogLevel,
    /// Extra flags for the server, e.g. "--fetch basic"
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    server_flags: String,
    /// The psychiq binary (default: next to this one)
    #[arg(long)]
    server: Option<PathBuf>,
    /// Make every drained job unique (each its own lock, `unique_for` an hour) and start the
    /// server with --unique-jobs, to measure what unique jobs cost
    #[arg(long, conflicts_with = "ruby")]
    unique: bool,
    /// Drain jobs within a rate limiter that never says no (the demo's `Limited`, a
    /// concurrent limiter, or `Metered`, a token bucket), to measure what a limit costs
    #[arg(long, value_enum, conflicts_with_all = ["ruby", "unique"])]
    limited: Option<LimitedBy>,
    /// Push the drained jobs as one batch (in steps of 10,000: the first creates it, the
    /// rest are added to it), to measure what counting batch jobs costs
    #[arg(long, conflicts_with_all = ["ruby", "unique"])]
    batch: bool,
    /// Measure the enqueue rates only (no server): bench/compare.sh runs it right after Ruby's
    /// enqueue figures, so both meet the same loopback latency, which drifts within minutes
    #[arg(long, conflicts_with = "ruby")]
    enqueue_only: bool,
    /// Redis URL
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// The server's log level (`--log`).
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum LogLevel {
    /// Warnings and errors only: no per-job lines.
    Warn,
    /// The server's own default: per-job `start` and `done` lines, to a file.
    Default,
}

/// The drained jobs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// `Noop`, no arguments.
    Noop,
    /// `Ingest` with a 1 KB order object.
    Ingest,
    /// 90% `Noop`, 10% `Sleep` 50 ms.
    Mixed,
}

/// The rate limiter the drained jobs run within (`--limited`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LimitedBy {
    /// `Limited`: a concurrent limiter (a lease taken, renewed and let go per job).
    Concurrent,
    /// `Metered`: a token bucket (one check per job).
    Bucket,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

async fn run(args: Args) -> Fallible<()> {
    let mut redis = RedisConfig::from_url(args.redis_url.clone())?;
    // As the server reads it (it inherits the variable): pushes wait for replicas too.
    if let Some(replicas) = std::env::var("PSYCHIQ_WAIT_REPLICAS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        redis = redis.wait_for_replicas(replicas, Duration::from_secs(1));
    }
    // Ruby Sidekiq runs on bare keys (redis-namespace slows it down several times).
    let namespace = if args.ruby {
        String::new()
    } else {
        format!("psychiq-load-{}", std::process::id())
    };
    let client = Client::connect(&redis, &namespace).await?;
    let mut conn = client.redis_connection().expect("a Redis client");
    if args.ruby {
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
        if keys > 0 {
            return Err(format!(
                "--ruby uses Sidekiq's bare keys and flushes the database at the end, so it needs an empty Redis of its own; {} holds {keys} keys (bench/compare.sh starts a private redis-server)",
                args.redis_url
            )
            .into());
        }
    }
    let server_bin = match &args.server {
        Some(path) => path.clone(),
        None if args.ruby => PathBuf::from("sidekiq"),
        None => std::env::current_exe()?.with_file_name("psychiq"),
    };
    if !args.ruby && !server_bin.exists() {
        return Err(format!(
            "{} not found: build it with cargo build --release --bin psychiq, or pass --server",
            server_bin.display()
        )
        .into());
    }
    let result = measure(&args, &client, &mut conn, &namespace, &server_bin).await;
    let _ = std::fs::remove_file(server_log(&namespace));
    if args.ruby {
        let _: redis::RedisResult<()> = redis::cmd("FLUSHDB").query_async(&mut conn).await;
    } else {
        cleanup(&mut conn, &namespace).await;
    }
    result
}

async fn measure(
    args: &Args,
    client: &Client,
    conn: &mut RedisConnection,
    namespace: &str,
    server_bin: &PathBuf,
) -> Fallible<()> {
    let mut report: Vec<(String, String)> = Vec::new();
    let noop = || Job::new("Noop", NoArgs).expect("[] is an array");
    let floor = redis_floor(conn, client).await?;
    report.push((
        "Redis floor: LPUSH + RPOP + INCR a job, 1,000 jobs a pipeline".into(),
        format!(
            "{:.0} jobs/s, {:.1} µs Redis CPU per job",
            floor.jobs_per_sec, floor.redis_us
        ),
    ));

    // Enqueue rates. The singles go to queues the server never reads, then are deleted.
    let queue_names: Vec<String> = match args.queues {
        0 | 1 => vec!["default".to_string()],
        n => (1..=n).map(|i| format!("q{i}")).collect(),
    };
    // Sleeping jobs write when they started and finished, to count how many ran at once.
    let sleep_log = std::env::temp_dir().join(format!("{namespace}-sleep.jsonl"));
    let sleep_path = sleep_log.to_string_lossy().to_string();
    let jobs: Vec<Job> = (0..args.jobs)
        .map(|i| {
            let job = if args.sleep_ms > 0 {
                Job::new("Sleep", (args.sleep_ms, &sleep_path)).expect("array")
            } else {
                match args.workload {
                    Workload::Noop => noop(),
                    Workload::Ingest => {
                        Job::new("Ingest", (Order::sample(i as u64),)).expect("array")
                    }
                    Workload::Mixed if i % 10 == 9 => Job::new("Sleep", (50,)).expect("array"),
                    Workload::Mixed => noop(),
                }
            };
            let job = match args.limited {
                Some(LimitedBy::Concurrent) => Job::new("Limited", (i,)).expect("array"),
                Some(LimitedBy::Bucket) => Job::new("Metered", (i,)).expect("array"),
                None => job,
            };
            let job = job.queue(queue_names[i % queue_names.len()].clone());
            if args.unique {
                // Each job its own lock: Noop reads any arguments, so it is given its index.
                let job = match args.workload {
                    Workload::Noop if args.sleep_ms == 0 => Job::new("Noop", (i,))
                        .expect("array")
                        .queue(job.queue_name()),
                    _ => job,
                };
                job.unique_for(Duration::from_secs(3600))
            } else {
                job
            }
        })
        .collect();
    let started = Instant::now();
    if args.batch {
        let mut jobs = jobs.into_iter();
        let first: Vec<Job> = jobs.by_ref().take(10_000).collect();
        let bid = psychiq::batch::Batch::new("psychiq-load")
            .push(client, first)
            .await?;
        loop {
            let more: Vec<Job> = jobs.by_ref().take(10_000).collect();
            if more.is_empty() {
                break;
            }
            psychiq::batch::Batch::open(client, &bid, more).await?;
        }
    } else {
        client.push_bulk(jobs).await?;
    }
    let bulk = args.jobs as f64 / started.elapsed().as_secs_f64();
    report.push((
        "enqueue, bulk (1,000 a command, 10,000 a round trip)".into(),
        format!("{bulk:.0} jobs/s"),
    ));

    let singles = if args.ruby { 0 } else { args.singles };
    let started = Instant::now();
    for _ in 0..singles {
        client.push(noop().queue("load-single")).await?;
    }
    let single = singles as f64 / started.elapsed().as_secs_f64();
    if singles > 0 {
        report.push((
            "enqueue, single, 1 task".into(),
            format!("{single:.0} jobs/s"),
        ));
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let client = client.clone();
        let count = singles / 32;
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                client
                    .push(
                        Job::new("Noop", NoArgs)
                            .expect("array")
                            .queue("load-single"),
                    )
                    .await?;
            }
            Ok::<(), psychiq::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let multi = (singles / 32 * 32) as f64 / started.elapsed().as_secs_f64();
    if singles > 0 {
        report.push((
            "enqueue, single, 32 tasks".into(),
            format!("{multi:.0} jobs/s"),
        ));
    }
    let _: () = redis::cmd("DEL")
        .arg(client.keys().queue("load-single"))
        .query_async(conn)
        .await?;
    if args.enqueue_only {
        println!(
            "psychiq-load: {} client jobs, enqueue only, server flags \"\"",
            args.jobs
        );
        print_report(report);
        return Ok(());
    }

    // Drain.
    let before = redis_info(conn).await?;
    let mut servers = (0..args.processes.max(1))
        .map(|_| start_server(args, namespace, server_bin, &queue_names))
        .collect::<Fallible<Vec<Child>>>()?;
    let processes = client.keys().key("processes");
    let boot = Instant::now();
    loop {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&processes)
            .query_async(conn)
            .await?;
        if members.len() >= servers.len() {
            break;
        }
        if boot.elapsed() > Duration::from_secs(15) {
            return Err("the server did not register within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu_of = |servers: &[Child]| {
        servers
            .iter()
            .map(|s| process_cpu_secs(s.id()))
            .sum::<f64>()
    };
    let cpu_at_start = cpu_of(&servers);
    let started = Instant::now();
    let queue_keys: Vec<String> = queue_names.iter().map(|q| client.keys().queue(q)).collect();
    let mut last_print = Instant::now();
    // With sleeping jobs: how many jobs the servers hold while the queue still has work.
    let mut held_samples: Vec<usize> = Vec::new();
    loop {
        // Light polling (its commands are left out of the figures; its CPU is not).
        let mut pipe = redis::pipe();
        for key in &queue_keys {
            pipe.llen(key);
        }
        let lengths: Vec<usize> = pipe.query_async(conn).await?;
        let left: usize = lengths.iter().sum();
        if left == 0 && inprogress(conn, namespace).await? == 0 {
            break;
        }
        if args.sleep_ms > 0 && left > 0 && started.elapsed() > Duration::from_millis(100) {
            held_samples.push(held(conn, namespace).await?);
        }
        if last_print.elapsed() > Duration::from_millis(250) {
            let done = args.jobs - left;
            eprint!(
                "\rdraining: {done:>8} / {} jobs, {:>7.0} jobs/s",
                args.jobs,
                done as f64 / started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(if left > 0 { 20 } else { 2 })).await;
    }
    let drain = started.elapsed().as_secs_f64();
    eprintln!(
        "\rdrained {} jobs in {drain:.2} s{}",
        args.jobs,
        " ".repeat(30)
    );
    let cpu = cpu_of(&servers) - cpu_at_start;
    let after = redis_info(conn).await?;
    let peak_rss = servers
        .iter()
        .map(|s| proc_status_kb(s.id(), "VmHWM:"))
        .max()
        .unwrap_or(0);
    let n = args.jobs as f64;
    report.push((
        format!("drain {} jobs at -c {}", args.jobs, args.concurrency),
        format!("{:.0} jobs/s ({drain:.2} s)", n / drain),
    ));
    let redis_us = (after.cpu - before.cpu) * 1e6 / n;
    report.push((
        "drain rate / Redis floor rate".into(),
        format!("{:.1}%", 100.0 * n / drain / floor.jobs_per_sec),
    ));
    report.push((
        "Redis CPU per job / floor's".into(),
        format!("{:.1}x", redis_us / floor.redis_us),
    ));
    report.push((
        "server CPU per job".into(),
        format!("{:.1} µs", cpu * 1e6 / n),
    ));
    report.push(("Redis CPU per job".into(), format!("{redis_us:.1} µs")));
    report.push((
        "Redis commands per job".into(),
        format!("{:.2}", commands_between(&before, &after) as f64 / n),
    ));
    if args.sleep_ms > 0 {
        let spans: Vec<(f64, f64)> = std::fs::read_to_string(&sleep_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|l| Some((l[2].as_f64()?, l[3].as_f64()?)))
            .collect();
        let _ = std::fs::remove_file(&sleep_log);
        let first = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let last = spans.iter().map(|s| s.1).fold(0.0, f64::max);
        let busy: f64 = spans.iter().map(|(a, b)| b - a).sum();
        if last > first {
            report.push((
                "jobs running at once (mean, from each job's start and end)".into(),
                format!(
                    "{:.1} of {} ({} jobs, mean run {:.2} ms)",
                    busy / (last - first),
                    args.concurrency,
                    spans.len(),
                    1e3 * busy / spans.len() as f64
                ),
            ));
        }
    }
    if !held_samples.is_empty() {
        let mean = held_samples.iter().sum::<usize>() as f64 / held_samples.len() as f64;
        let min = held_samples.iter().min().copied().unwrap_or(0);
        report.push((
            "jobs held at once (in-progress hashes: running + prefetched)".into(),
            format!("mean {mean:.0}, min {min} ({} samples)", held_samples.len()),
        ));
    }
    report.push((
        "server peak RSS while draining".into(),
        format!("{:.1} MB", peak_rss as f64 / 1024.0),
    ));
    if args.log == LogLevel::Default {
        // Lines written so far (the last few milliseconds' may still be in the buffer).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let lines = std::fs::read(server_log(namespace))
            .map(|text| text.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0);
        report.push(("server log lines written".into(), lines.to_string()));
    }

    // Idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_before = redis_info(conn).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_after = redis_info(conn).await?;
    let idle_cmds = commands_between(&idle_before, &idle_after) as f64 / args.idle_secs as f64;
    report.push((
        "idle server: Redis commands per second".into(),
        format!("{idle_cmds:.1}"),
    ));
    report.push((
        "idle server: RSS".into(),
        format!(
            "{:.1} MB",
            proc_status_kb(servers[0].id(), "VmRSS:") as f64 / 1024.0
        ),
    ));

    // Latency of a trickle on the idle server.
    let stamps = std::env::temp_dir().join(format!("{namespace}-clock.jsonl"));
    let path = stamps.to_string_lossy().to_string();
    let mut sent = HashMap::new();
    for i in 0..args.trickle {
        let at = psychiq::__private::now_secs();
        // Spread over the queues the server reads (with --queues, one in each of many).
        let queue = &queue_names[(i * 7919) % queue_names.len()];
        client
            .push(Job::new("Clock", (&path, i))?.queue(queue.clone()))
            .await?;
        sent.insert(i, at);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = Instant::now();
    let mut latencies = loop {
        let text = std::fs::read_to_string(&stamps).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= args.trickle || waited.elapsed() > Duration::from_secs(10) {
            break lines
                .iter()
                .filter_map(|l| {
                    Some((l[0].as_f64()? - sent.get(&(l[2].as_u64()? as usize))?) * 1000.0)
                })
                .collect::<Vec<f64>>();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = std::fs::remove_file(&stamps);
    latencies.sort_by(|a, b| a.total_cmp(b));
    if !latencies.is_empty() {
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        report.push((
            "enqueue→start latency, idle server".into(),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms ({} jobs)",
                pick(0.5),
                pick(0.99),
                latencies.len()
            ),
        ));
    }

    for server in &mut servers {
        stop_server(server);
    }
    println!(
        "psychiq-load: {}{} {} jobs, -c {}, {} process(es), {} queue(s), server flags {:?}",
        if args.ruby { "ruby sidekiq, " } else { "" },
        args.jobs,
        if args.sleep_ms > 0 {
            format!("Sleep {} ms", args.sleep_ms)
        } else {
            match args.workload {
                Workload::Noop => "Noop",
                Workload::Ingest => "Ingest (1 KB order)",
                Workload::Mixed => "mixed (90% Noop, 10% Sleep 50 ms)",
            }
            .to_string()
        },
        args.concurrency,
        servers.len(),
        queue_names.len(),
        args.server_flags
    );
    print_report(report);
    Ok(())
}

/// Prints figures as `  name  value`, names padded to one width.
fn print_report(report: Vec<(String, String)>) {
    let width = report
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (name, value) in report {
        println!("  {name:<width$}  {value}");
    }
}

fn start_server(args: &Args, namespace: &str, bin: &PathBuf, queues: &[String]) -> Fallible<Child> {
    // At warn the server says only what went wrong: to the terminal. Its per-job lines go
    // to a file, as in production, so writing them is part of what is measured.
    let (stdout, stderr) = match args.log {
        LogLevel::Warn => (Stdio::null(), Stdio::inherit()),
        LogLevel::Default => {
            // Ruby Sidekiq logs to stdout, Psychiq to stderr: both to the file.
            let file = std::fs::File::create(server_log(namespace))?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
    };
    if args.ruby {
        let cmd = args.ruby_cmd.as_deref().unwrap_or("sidekiq");
        let mut words = cmd.split_whitespace();
        let mut command = Command::new(words.next().unwrap_or("sidekiq"));
        command
            .args(words)
            .args(["-r", "./bench/sidekiq_workers.rb", "-c"])
            .arg(args.concurrency.to_string())
            .args(queues.iter().flat_map(|q| ["-q".to_string(), q.clone()]))
            .env("REDIS_URL", &args.redis_url)
            .env(
                "LOG",
                if args.log == LogLevel::Default {
                    "default"
                } else {
                    "warn"
                },
            )
            .stdout(stdout)
            .stderr(stderr);
        return command.spawn().map_err(|e| {
            format!(
                "could not start {} (Ruby Sidekiq; apt install ruby-sidekiq): {e}",
                bin.display()
            )
            .into()
        });
    }
    let mut command = Command::new(bin);
    command
        .args([
            "--redis-url",
            &args.redis_url,
            "-n",
            namespace,
            "-s",
            "demo",
            "-c",
            &args.concurrency.to_string(),
        ])
        .args(queues.iter().flat_map(|q| {
            [
                "-q".to_string(),
                if queues.len() > 1 {
                    format!("{q},1")
                } else {
                    q.clone()
                },
            ]
        }))
        .args(args.server_flags.split_whitespace())
        .args(args.unique.then_some("--unique-jobs"))
        .args(
            args.limited
                .map(|_| ["-s", "demo-limits"])
                .into_iter()
                .flatten(),
        )
        .stdout(stdout)
        .stderr(stderr);
    match args.log {
        LogLevel::Warn => command.env("RUST_LOG", "warn"),
        LogLevel::Default => command.env_remove("RUST_LOG"),
    };
    Ok(command.spawn()?)
}

/// Where the server's log goes with `--log default`.
fn server_log(namespace: &str) -> PathBuf {
    let name = if namespace.is_empty() {
        format!("psychiq-load-{}", std::process::id())
    } else {
        namespace.to_string()
    };
    std::env::temp_dir().join(format!("{name}-server.log"))
}

fn stop_server(server: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
}

/// What Redis alone does for the least a job needs.
struct Floor {
    jobs_per_sec: f64,
    redis_us: f64,
}

/// The pipelined Redis job floor: per job an `LPUSH` of a Noop payload, an `RPOP` of it and
/// an `INCR`, 1,000 jobs a pipeline, 50,000 jobs from one connection: the least Redis can do
/// for a job, to compare a drain with.
async fn redis_floor(conn: &mut RedisConnection, client: &Client) -> Fallible<Floor> {
    const JOBS: usize = 50_000;
    const BATCH: usize = 1_000;
    let key = client.keys().queue("load-floor");
    let counter = client.keys().key("load-floor-count");
    let payload = r#"{"retry":true,"queue":"default","class":"Noop","args":[],"jid":"0123456789abcdef01234567","created_at":1764633600.123,"enqueued_at":1764633600.123}"#;
    let before = redis_info(conn).await?;
    let started = Instant::now();
    for _ in 0..JOBS / BATCH {
        let mut pipe = redis::pipe();
        for _ in 0..BATCH {
            pipe.lpush(&key, payload)
                .ignore()
                .rpop(&key, None)
                .ignore()
                .incr(&counter, 1)
                .ignore();
        }
        let () = pipe.query_async(conn).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = redis_info(conn).await?;
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(&counter)
        .query_async(conn)
        .await?;
    Ok(Floor {
        jobs_per_sec: JOBS as f64 / elapsed,
        redis_us: (after.cpu - before.cpu) * 1e6 / JOBS as f64,
    })
}

struct RedisInfo {
    cpu: f64,
    calls: HashMap<String, u64>,
}

async fn redis_info(conn: &mut RedisConnection) -> Fallible<RedisInfo> {
    let text: String = redis::cmd("INFO").arg("all").query_async(conn).await?;
    let mut cpu = 0.0;
    let mut calls = HashMap::new();
    for line in text.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_sys:")
            .or_else(|| line.strip_prefix("used_cpu_user:"))
        {
            cpu += v.trim().parse::<f64>().unwrap_or(0.0);
        }
        if let Some(rest) = line.strip_prefix("cmdstat_")
            && let Some((name, stats)) = rest.split_once(':')
            && let Some(n) = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))
        {
            calls.insert(name.to_string(), n.parse().unwrap_or(0));
        }
    }
    Ok(RedisInfo { cpu, calls })
}

/// Commands executed between two snapshots, leaving out this tool's own INFO, LLEN, SMEMBERS
/// and SCAN polling.
fn commands_between(before: &RedisInfo, after: &RedisInfo) -> u64 {
    after
        .calls
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "info" | "llen" | "hlen" | "type" | "smembers" | "scan"
            )
        })
        .map(|(name, n)| n - before.calls.get(name).copied().unwrap_or(0))
        .sum()
}

/// The namespace's in-progress stores (one SCAN: the load test's namespace is small).
async fn inprogress_lists(conn: &mut RedisConnection, namespace: &str) -> Fallible<Vec<String>> {
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!(
            "{}inprogress:*:*",
            psychiq::Keys::new(namespace).prefix()
        ))
        .arg("COUNT")
        .arg(100_000)
        .query_async(conn)
        .await?;
    Ok(keys)
}

async fn inprogress(conn: &mut RedisConnection, namespace: &str) -> Fallible<usize> {
    Ok(inprogress_lists(conn, namespace).await?.len())
}

/// Jobs in every in-progress store: those running plus those finished and not yet
/// acknowledged (acknowledgements go out within a round trip). Hashes, or the lists of a
/// server built before they were (`--server OLD`).
async fn held(conn: &mut RedisConnection, namespace: &str) -> Fallible<usize> {
    let keys = inprogress_lists(conn, namespace).await?;
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("TYPE").arg(key);
    }
    let kinds: Vec<String> = pipe.query_async(conn).await?;
    let mut pipe = redis::pipe();
    for (key, kind) in keys.iter().zip(&kinds) {
        match kind.as_str() {
            "list" => pipe.llen(key),
            _ => pipe.hlen(key),
        };
    }
    let lengths: Vec<usize> = pipe.query_async(conn).await?;
    Ok(lengths.iter().sum())
}

async fn cleanup(conn: &mut RedisConnection, namespace: &str) {
    let keys: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{namespace}:*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async(conn)
        .await;
    if let Ok((_, keys)) = keys
        && !keys.is_empty()
    {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(conn).await;
    }
}

/// User + system CPU seconds of a process (Linux /proc; clock ticks of 100 Hz).
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
