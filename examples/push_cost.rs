//! What a single push costs, with and without reliable push: plain pushes, pushes with
//! reliable push on while Redis answers (each push sets its marker in a transaction), and
//! pushes kept while Redis is away, in memory and in a journal (fsynced per push).
//!
//! ```sh
//! cargo run --release --example push_cost -- redis://127.0.0.1:6399 5000
//! ```

use std::time::{Duration, Instant};

use psychiq::{Client, Job, RedisConfig, ReliablePush};

#[tokio::main]
async fn main() -> psychiq::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let redis = RedisConfig::from_url(url)?;
    let namespace = format!("push-cost-{}", std::process::id());
    let report = |what: &str, took: Duration| {
        println!(
            "{what:<44} {:>8.1} µs a push",
            took.as_secs_f64() * 1e6 / n as f64
        );
    };

    let plain = Client::connect(&redis, &namespace).await?;
    report("plain", pushes(&plain, n).await?);
    let mut reliable = Client::connect(&redis, &namespace).await?;
    reliable.reliable_push(ReliablePush::in_memory())?;
    report("reliable push on, Redis up", pushes(&reliable, n).await?);

    // A Redis that is not there: a closed port on loopback.
    let away = RedisConfig::from_url("redis://127.0.0.1:1".to_string())?;
    let mut memory = Client::connect_lazily(&away, &namespace).await?;
    memory.reliable_push(ReliablePush::in_memory())?;
    report("Redis away, kept in memory", pushes(&memory, n).await?);
    let dir = std::env::temp_dir().join(format!("push-cost-{}", std::process::id()));
    let mut journal = Client::connect_lazily(&away, &namespace).await?;
    journal.reliable_push(ReliablePush::journal(&dir))?;
    report(
        "Redis away, kept in a journal (fsync each)",
        pushes(&journal, n).await?,
    );
    drop((memory, journal));
    let _ = std::fs::remove_dir_all(&dir);
    let mut conn = redis.connect().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
    Ok(())
}

async fn pushes(client: &Client, n: usize) -> psychiq::Result<Duration> {
    let started = Instant::now();
    for i in 0..n {
        client.try_push(Job::new("Noop", (i,))?).await?;
    }
    Ok(started.elapsed())
}
