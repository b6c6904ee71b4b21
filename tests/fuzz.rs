//! Property tests of the payload path: arbitrary bytes and JSON shapes (with the fields a
//! job has, of every type, truncated or with a byte flipped) pushed to a queue and to the
//! schedule, then fetched, run and disposed of by a real server on the real Redis.
//!
//! Whatever the input: the server never panics, every job is counted exactly once, nothing
//! stays in the queue or an in-progress list, and what lands in `retry` and `dead` is valid
//! UTF-8 JSON. The scheduler moves every due member, whatever its bytes, to a queue or the
//! dead set. Cases are few (`PSYCHIQ_FUZZ_CASES`, 12 by default) so CI stays quick; raise
//! the number to search longer.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use psychiq::ServerConfig;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        Just(json!("\u{1b}[2J\u{7}\r")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A field a job has (or a stranger), with a value that may or may not fit it.
fn job_field() -> impl Strategy<Value = (String, Value)> {
    let names = prop::sample::select(vec![
        "class",
        "args",
        "jid",
        "queue",
        "retry",
        "retry_count",
        "enqueued_at",
        "created_at",
        "failed_at",
        "backtrace",
        "dead",
        "retry_queue",
        "recovery_count",
        "at",
        "wrapped",
        "tags",
    ]);
    let value = prop_oneof![
        json_value(),
        prop::sample::select(vec!["Record", "Typed", "Panicky", "Flaky", "Nope"])
            .prop_map(Value::from),
        prop::collection::vec(json_value(), 0..3).prop_map(Value::Array),
    ];
    (names.prop_map(String::from), value)
}

/// A JSON object with job fields; usually runnable-looking, so the worker paths are reached.
fn job_object() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(job_field(), 0..8).prop_map(|fields| {
        let mut map: Map<String, Value> = fields.into_iter().collect();
        map.entry("class").or_insert_with(|| Value::from("Record"));
        serde_json::to_vec(&Value::Object(map)).unwrap()
    })
}

/// One payload's bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let object = job_object();
    let damaged = (
        job_object(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, at, byte, cut)| {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] = byte;
                }
            }
            bytes
        });
    prop_oneof![
        3 => object,
        2 => damaged,
        1 => prop::collection::vec(any::<u8>(), 0..48),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

async fn check(queued: Vec<Vec<u8>>, scheduled: Vec<Vec<u8>>) {
    let ns = TestNs::new().await;
    let keys = ns.keys();

    // The scheduler: every due member leaves the set, to some queue or to the dead set.
    if !scheduled.is_empty() {
        let mut pipe = redis::pipe();
        for (i, raw) in scheduled.iter().enumerate() {
            pipe.zadd(keys.schedule(), raw.as_slice(), i as f64)
                .ignore();
        }
        let () = pipe.query_async(&mut ns.conn()).await.unwrap();
        let distinct: usize = ns.query(redis::cmd("ZCARD").arg(keys.schedule())).await;
        let mut conn = ns.conn();
        let moved = psychiq::__private::enqueue_due(&mut conn, &keys)
            .await
            .expect("the scheduler copes with any member");
        assert_eq!(moved, distinct);
        let left: usize = ns.query(redis::cmd("ZCARD").arg(keys.schedule())).await;
        assert_eq!(left, 0);
        let queues: Vec<Vec<u8>> = ns.query(redis::cmd("SMEMBERS").arg(keys.queues())).await;
        let mut landed: usize = ns.query(redis::cmd("ZCARD").arg(keys.dead())).await;
        for queue in &queues {
            let key = [keys.queue("").as_bytes(), queue].concat();
            let size: usize = ns.query(redis::cmd("LLEN").arg(key)).await;
            landed += size;
        }
        assert_eq!(landed, distinct, "every scheduled member is somewhere");
        // Start the server's part from a clean namespace.
        let all: Vec<Vec<u8>> = ns
            .query(redis::cmd("KEYS").arg(format!("{}:*", ns.namespace)))
            .await;
        let () = ns.query(redis::cmd("DEL").arg(all)).await;
    }

    // The server: every queued job is counted once and ends somewhere readable.
    let mut pipe = redis::pipe();
    for raw in &queued {
        pipe.lpush(keys.queue("default"), raw.as_slice()).ignore();
    }
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let record = Record::default();
    let config: ServerConfig = ns.config().concurrency(4);
    let server = RunningServer::start(config, registry_with(&record));
    wait_until(Duration::from_secs(30), "the queue drained", || async {
        let waiting: usize = ns
            .query(redis::cmd("LLEN").arg(keys.queue("default")))
            .await;
        let held: Vec<Vec<u8>> = ns
            .query(redis::cmd("KEYS").arg(format!("{}:inprogress:*", ns.namespace)))
            .await;
        waiting == 0 && held.is_empty()
    })
    .await;
    server.stop().await;
    assert_eq!(
        ns.get_u64(&keys.stat("processed")).await,
        queued.len() as u64,
        "every job counted once"
    );
    for set in [keys.retry(), keys.dead()] {
        let members: Vec<Vec<u8>> = ns
            .query(redis::cmd("ZRANGE").arg(&set).arg(0).arg(-1))
            .await;
        for member in members {
            let text = String::from_utf8(member).expect("retry and dead members are UTF-8");
            let job: Value = serde_json::from_str(&text).expect("and JSON");
            assert!(job.is_object(), "{text}");
        }
    }
}

#[test]
fn arbitrary_payloads_never_crash_strand_or_double_count() {
    let cases = std::env::var("PSYCHIQ_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let batches = (
        prop::collection::vec(payload(), 1..40),
        prop::collection::vec(payload(), 0..20),
    );
    runner
        .run(&batches, |(queued, scheduled)| {
            runtime.block_on(check(queued, scheduled));
            Ok(())
        })
        .unwrap();
}
