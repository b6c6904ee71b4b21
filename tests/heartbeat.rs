//! The heartbeat as Sidekiq's readers see it, and remote quiet/stop through the signals list.

mod common;

use std::time::Duration;

use common::*;
use psychiq::Job;
use serde_json::{Value, json};

const RUBY_PROCESS_SET: &str = r#"
require "sidekiq"; require "sidekiq/api"; require "json"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379"), namespace: ARGV[0] } }
puts Sidekiq::ProcessSet.new.map { |p| %w[identity concurrency queues busy quiet rss tag hostname pid].to_h { |k| [k, p[k]] } }.to_json
"#;

const RUBY_WEB_BUSY: &str = r#"
require "sidekiq"; require "sidekiq/web"; require "rack/mock"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379"), namespace: ARGV[0] } }
app = Rack::Builder.new { use Rack::Session::Cookie, secret: "s" * 64; run Sidekiq::Web }.to_app
res = Rack::MockRequest.new(app).get("/busy")
abort "status #{res.status}" unless res.status == 200
puts res.body
"#;

#[tokio::test]
async fn heartbeat_registers_shows_work_and_obeys_remote_quiet_and_stop() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    let record = Record::default();
    let config = ns
        .config()
        .concurrency(3)
        .queue("default")
        .queue("low")
        .tag("billing");
    let server = RunningServer::start(config, registry_with(&record));
    ns.client.push(Job::new("Nap", (8_000,))?).await?;
    ns.client
        .push(Job::new("Nap", (8_000,))?.queue("low"))
        .await?;

    let processes = keys.key("processes");
    wait_until(
        Duration::from_secs(12),
        "two busy jobs in the heartbeat",
        || async {
            let members: Vec<String> = ns.query(redis::cmd("SMEMBERS").arg(&processes)).await;
            let Some(id) = members.first() else {
                return false;
            };
            let busy: Option<String> = ns
                .query(redis::cmd("HGET").arg(ns.keys().key(id)).arg("busy"))
                .await;
            busy.as_deref() == Some("2")
        },
    )
    .await;
    let members: Vec<String> = ns.query(redis::cmd("SMEMBERS").arg(&processes)).await;
    assert_eq!(members.len(), 1);
    let identity = members[0].clone();

    let id_key = keys.key(&identity);
    let fields: std::collections::HashMap<String, String> =
        ns.query(redis::cmd("HGETALL").arg(&id_key)).await;
    let info: Value = serde_json::from_str(&fields["info"]).unwrap();
    assert_eq!(info["identity"], identity.as_str());
    assert_eq!(info["pid"], std::process::id());
    assert_eq!(info["concurrency"], 3);
    assert_eq!(info["queues"], json!(["default", "low"]));
    assert_eq!(info["tag"], "billing");
    assert!(info["started_at"].is_f64());
    assert_eq!(fields["quiet"], "false");
    assert_eq!(fields["concurrency"], "3");
    assert!(fields["rss"].parse::<u64>().unwrap() > 0);
    assert!(
        fields["beat"].contains('.'),
        "beat is float seconds: {}",
        fields["beat"]
    );
    fields["rtt_us"].parse::<u64>().unwrap();
    let ttl: i64 = ns.query(redis::cmd("TTL").arg(&id_key)).await;
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    for work_key in [format!("{id_key}:work"), format!("{id_key}:workers")] {
        let work: std::collections::HashMap<String, String> =
            ns.query(redis::cmd("HGETALL").arg(&work_key)).await;
        assert_eq!(work.len(), 2, "{work_key}");
        for entry in work.values() {
            let entry: Value = serde_json::from_str(entry).unwrap();
            let payload: Value =
                serde_json::from_str(entry["payload"].as_str().expect("payload is a JSON string"))
                    .unwrap();
            assert_eq!(payload["class"], "Nap");
            assert_eq!(entry["queue"], payload["queue"]);
            assert!(entry["run_at"].is_u64());
        }
    }

    if ruby_sidekiq_available() {
        let out = ruby(RUBY_PROCESS_SET, &ns.namespace, &redis_url());
        let seen: Value = serde_json::from_slice(&out).unwrap();
        let process = &seen[0];
        assert_eq!(process["identity"], identity.as_str());
        assert_eq!(process["concurrency"], 3);
        assert_eq!(process["busy"], 2);
        assert_eq!(process["queues"], json!(["default", "low"]));
        assert_eq!(process["quiet"], "false");
        // Sidekiq 6.4.1's own dashboard lists the process and its running jobs (from :workers).
        let out = ruby(RUBY_WEB_BUSY, &ns.namespace, &redis_url());
        let page = String::from_utf8_lossy(&out);
        assert!(
            page.contains(&identity) && page.contains("billing"),
            "the busy page lists the process"
        );
        assert_eq!(
            page.matches(r#"<div class="args">8000</div>"#).count(),
            2,
            "the busy page lists both running jobs"
        );
    }

    // Remote quiet: the process says so and takes no new job.
    let signals = format!("{id_key}-signals");
    let () = ns
        .query(redis::cmd("LPUSH").arg(&signals).arg("TSTP"))
        .await;
    wait_until(Duration::from_secs(8), "quiet=true", || async {
        let quiet: Option<String> = ns.query(redis::cmd("HGET").arg(&id_key).arg("quiet")).await;
        quiet.as_deref() == Some("true")
    })
    .await;
    ns.client
        .push(Job::new("Record", ("after quiet",))?)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(record.count(), 0, "a quiet server fetches nothing");

    // Remote stop: the running naps finish or go back, the process deregisters and exits.
    let () = ns
        .query(redis::cmd("LPUSH").arg(&signals).arg("TERM"))
        .await;
    server.wait(Duration::from_secs(20)).await;
    let members: Vec<String> = ns.query(redis::cmd("SMEMBERS").arg(&processes)).await;
    assert!(members.is_empty(), "deregistered: {members:?}");
    let exists: u32 = ns
        .query(
            redis::cmd("EXISTS")
                .arg(&id_key)
                .arg(format!("{id_key}:work")),
        )
        .await;
    assert_eq!(exists, 0);
    assert_eq!(
        ns.lrange(&keys.queue("default")).await.len(),
        1,
        "the job pushed while quiet waits"
    );
    Ok(())
}
