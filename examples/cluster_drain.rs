//! Drain throughput over many queues, on one Redis or a Redis Cluster (`bench/cluster.sh`).
//!
//! Pushes `JOBS` no-op jobs spread over `QUEUES` queues, starts one `psychiq` server
//! (`target/release/psychiq`, demo workers) on them, and measures how long the drain takes
//! and how much CPU each Redis node spent on it.
//!
//! ```text
//! cargo build --release --features cli --example cluster_drain --bin psychiq
//! target/release/examples/cluster_drain redis+cluster://127.0.0.1:7001 100000 12 25
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use psychiq::api::Api;
use psychiq::{Client, Job, RedisConfig};

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Fallible<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: cluster_drain URL [JOBS] [QUEUES] [CONCURRENCY] [NODE_PORTS]")?;
    let jobs: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let queues: usize = args.next().map_or(Ok(12), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(25), |a| a.parse())?;
    // The Redis nodes whose CPU to read (`INFO cpu`), comma-separated ports.
    let ports: Vec<u16> = args
        .next()
        .map(|p| p.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    let namespace = format!("drain-{}", std::process::id());
    let redis = RedisConfig::from_url(url.clone())?;
    let client = Client::connect(&redis, &namespace).await?;
    let api = Api::connect(&redis, &namespace).await?;
    let names: Vec<String> = (0..queues).map(|i| format!("q{i}")).collect();

    let batch: Vec<Job> = (0..jobs)
        .map(|i| Job::new("Noop", ()).map(|job| job.queue(names[i % queues].clone())))
        .collect::<Result<_, _>>()?;
    let pushing = Instant::now();
    client.push_bulk(batch).await?;
    let pushed_in = pushing.elapsed();

    let cpu_before = redis_cpu(&ports);
    let started = Instant::now();
    let mut server = Command::new("target/release/psychiq")
        .args(["--redis-url", &url, "-n", &namespace, "-s", "demo"])
        .args(["-c", &concurrency.to_string()])
        .args(
            names
                .iter()
                .flat_map(|q| ["-q".to_string(), format!("{q},1")]),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start target/release/psychiq (cargo build --release): {e}"))?;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stats = api.stats().await?;
        let running: usize = api.running().await?.len();
        if stats.enqueued == 0 && running == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = server.kill();
            return Err("the drain took over 5 minutes".into());
        }
    }
    let drained_in = started.elapsed();
    let cpu_after = redis_cpu(&ports);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let redis_cpu: f64 = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).sum();
    let per_node: Vec<String> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| format!("{:.2}", a - b))
        .collect();
    println!(
        "jobs={jobs} queues={queues} c={concurrency} push={:.0}/s drain={:.0}/s ({:.2} s) redis_cpu={redis_cpu:.2}s ({:.1} µs/job; per node {})",
        jobs as f64 / pushed_in.as_secs_f64(),
        jobs as f64 / drained_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        redis_cpu * 1e6 / jobs as f64,
        per_node.join(" ")
    );
    // Leave nothing behind: every queue's keys and the shared ones.
    api.clear(psychiq::api::SetKind::Dead).await?;
    for queue in &names {
        api.clear_queue(queue).await?;
    }
    Ok(())
}

/// Each node's CPU seconds so far (user + sys), from `redis-cli INFO cpu`.
fn redis_cpu(ports: &[u16]) -> Vec<f64> {
    ports
        .iter()
        .map(|port| {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "info", "cpu"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            ["used_cpu_sys:", "used_cpu_user:"]
                .iter()
                .filter_map(|name| {
                    out.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .sum()
        })
        .collect()
}
