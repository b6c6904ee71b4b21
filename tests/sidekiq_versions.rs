//! Payloads as Sidekiq 6.4, 7.x and 8.x write them (recorded from each version's format, see
//! `../shared/reference/sidekiq-wire.md`): Psychiq runs them, reads them through its API,
//! and rewrites them on failure without losing what it does not know. These fixtures carry
//! what a live run rarely shows (Pro's `bid`, `cattr`, MIME backtraces); the payloads the
//! real Sidekiq 7.3.10 and 8.0.10 write are exercised live in `sidekiq_modern.rs`.

mod common;

use std::time::Duration;

use common::*;
use psychiq::api::{Api, SetKind};
use serde_json::{Value, json};

/// `["app/jobs/invoice_job.rb:12:in `perform'", "sidekiq/processor.rb:196:in `execute_job'"]`,
/// zlib-deflated and base64-encoded by Ruby: strict (7.2.1+ and 8.x) and MIME (6.4 to 7.2.0).
const STRICT_BACKTRACE: &str = "eJyLVkosKNDPyk8q1s/MK8vPTE6NB3L0ipKsDI2sMvMUEgpSi9Lyi3LVlXSUijNTUrMzC/ULivKTU4uL84vAyizNwOpSK1KTS0vAutWVYgFOAh6t";
const MIME_BACKTRACE: &str = "eJyLVkosKNDPyk8q1s/MK8vPTE6NB3L0ipKsDI2sMvMUEgpSi9Lyi3LVlXSU\\nijNTUrMzC/ULivKTU4uL84vAyizNwOpSK1KTS0vAutWVYgFOAh6t\\n";

/// A Sidekiq 8.1 job as its client pushes it: integer-millisecond timestamps, extra keys.
const SIDEKIQ_8_QUEUED: &str = r#"{"retry":3,"queue":"default","class":"Record","args":[42,"eur",{"k":[1,2]}],"jid":"8a1f0c2e9d4b7a6c5e3f2a1b","created_at":1795714853365,"enqueued_at":1795714853366,"cattr":{"tenant":"acme"},"log_level":"debug","tags":["billing"]}"#;

/// A Sidekiq 7.3 job as its client pushes it: float seconds, `bid` from a Pro batch.
const SIDEKIQ_7_QUEUED: &str = r#"{"retry":true,"queue":"default","class":"Record","args":["seven"],"jid":"7b2e4d6f8a0c1e3f5a7b9c0d","created_at":1795714853.3651628,"enqueued_at":1795714853.3662,"bid":"b-XyZ"}"#;

fn retry_entry(version: u32) -> String {
    match version {
        8 => format!(
            r#"{{"retry":true,"queue":"default","class":"Flaky","args":[1],"jid":"8c0ffee0000000000000000a","created_at":1795714853365,"enqueued_at":1795714853366,"error_message":"declined","error_class":"PaymentDeclined","failed_at":1795714854000,"retry_count":0,"backtrace":true,"error_backtrace":"{STRICT_BACKTRACE}","discarded_at":null}}"#
        ),
        7 => format!(
            r#"{{"retry":true,"queue":"default","class":"Flaky","args":[1],"jid":"7c0ffee0000000000000000a","created_at":1795714853.3651628,"enqueued_at":1795714853.3662,"error_message":"declined","error_class":"PaymentDeclined","failed_at":1795714854.0123,"retry_count":0,"backtrace":true,"error_backtrace":"{STRICT_BACKTRACE}"}}"#
        ),
        _ => format!(
            r#"{{"retry":true,"queue":"default","class":"Flaky","args":[1],"jid":"6c0ffee0000000000000000a","created_at":1795714853.3651628,"enqueued_at":1795714853.3662,"error_message":"declined","error_class":"PaymentDeclined","failed_at":1795714854.0123,"retry_count":0,"backtrace":true,"error_backtrace":"{MIME_BACKTRACE}"}}"#
        ),
    }
}

#[tokio::test]
async fn jobs_pushed_by_sidekiq_7_and_8_run_with_their_arguments() {
    let ns = TestNs::new().await;
    ns.lpush_raw("default", SIDEKIQ_8_QUEUED).await;
    ns.lpush_raw("default", SIDEKIQ_7_QUEUED).await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    let queued = api.queue_jobs("default", 0, 10).await.unwrap();
    let eight = queued.iter().find(|j| j.jid().starts_with("8a")).unwrap();
    assert_eq!(eight.enqueued_at(), Some(1_795_714_853.366));
    assert_eq!(eight.created_at(), Some(1_795_714_853.365));

    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    wait_until(Duration::from_secs(10), "both jobs", || async {
        record.count() == 2
    })
    .await;
    server.stop().await;
    assert_eq!(
        record.seen(),
        vec![json!([42, "eur", {"k": [1, 2]}]), json!(["seven"])]
    );
}

#[tokio::test]
async fn retry_entries_of_every_version_are_read_and_rewritten_keeping_unknown_keys() {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    // Each entry is due now, so the scheduler moves it and Flaky fails it again.
    for version in [6, 7, 8] {
        let () = ns
            .query(
                redis::cmd("ZADD")
                    .arg(keys.retry())
                    .arg(1_795_714_854.0)
                    .arg(retry_entry(version)),
            )
            .await;
    }
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    let entries = api.set_page(SetKind::Retry, 0, 10).await.unwrap();
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        assert_eq!(entry.error_class(), Some("PaymentDeclined"));
        assert_eq!(
            entry.backtrace().unwrap(),
            vec![
                "app/jobs/invoice_job.rb:12:in `perform'",
                "sidekiq/processor.rb:196:in `execute_job'"
            ],
            "backtrace of {}",
            entry.jid()
        );
        let failed_at = entry.failed_at().unwrap();
        assert!(
            (failed_at - 1_795_714_854.0).abs() < 0.1,
            "{failed_at} read as seconds"
        );
    }

    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    wait_until(Duration::from_secs(10), "three second failures", || async {
        let rewritten = api.set_page(SetKind::Retry, 0, 10).await.unwrap();
        rewritten.len() == 3 && rewritten.iter().all(|j| j.retry_count() == Some(1))
    })
    .await;
    server.stop().await;
    for entry in api.set_page(SetKind::Retry, 0, 10).await.unwrap() {
        let item = entry.item().unwrap();
        let original = original(&entry);
        // Timestamps Psychiq writes are float seconds, which every version reads.
        assert!(item["retried_at"].is_f64(), "{item:?}");
        // What it did not write is kept as it was, integer milliseconds included.
        assert_eq!(item["created_at"], original["created_at"]);
        assert_eq!(item["failed_at"], original["failed_at"]);
        if entry.jid().starts_with('8') {
            assert!(item.contains_key("discarded_at"));
        }
        assert_eq!(item["args"], json!([1]));
    }
}

fn original(entry: &psychiq::api::JobRecord) -> Value {
    let version = match entry.jid().as_bytes()[0] {
        b'8' => 8,
        b'7' => 7,
        _ => 6,
    };
    serde_json::from_str(&retry_entry(version)).unwrap()
}
