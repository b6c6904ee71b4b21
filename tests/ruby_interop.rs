//! Ruby Sidekiq (Debian's ruby-sidekiq 6.4.1) enqueues; Psychiq runs the jobs with their
//! arguments intact. Skipped with a message when Ruby Sidekiq is not installed, unless
//! `PSYCHIQ_REQUIRE_RUBY=1` (as `.ci/run` sets), where a missing Ruby is a failure.

mod common;

use std::time::Duration;

use common::*;
use psychiq::{JobResult, Worker};
use serde_json::{Value, json};

/// Served under the class name a Ruby app uses.
#[derive(Clone, Default)]
struct Invoice {
    seen: Record,
}

impl Worker for Invoice {
    type Args = (u64, String);
    fn class_name() -> String {
        "Billing::InvoiceJob".into()
    }
    async fn perform(&self, (id, currency): (u64, String)) -> JobResult {
        self.seen.seen.lock().unwrap().push(json!([id, currency]));
        Ok(())
    }
}

const RUBY_CLIENT: &str = r#"
require "sidekiq"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
Sidekiq.logger.level = Logger::WARN
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379"), namespace: ARGV[0] } }
class Record; include Sidekiq::Worker; end
args = [1, "two", { "three" => 3.0, "n" => nil, "deep" => [[{}], []] }, [true, false],
        "emoji 😀 rtl עברית", 2**62, -1.5e-7, "", nil]
Record.perform_async(*args)
Record.perform_in(1, "later")
Sidekiq::Client.push_bulk("class" => Record, "args" => [["bulk", 1], ["bulk", 2]])
Sidekiq::Client.push("class" => "Billing::InvoiceJob", "args" => [42, "eur"])
"#;

#[tokio::test]
async fn jobs_pushed_by_ruby_sidekiq_run_with_their_arguments() {
    if !ruby_sidekiq_available() {
        return;
    }
    let ns = TestNs::new().await;
    ruby(RUBY_CLIENT, &ns.namespace, &redis_url());

    let record = Record::default();
    let invoice = Invoice::default();
    let mut registry = registry_with(&record);
    registry.register(invoice.clone());
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(10), "Ruby's jobs", || async {
        record.count() == 4 && invoice.seen.count() == 1
    })
    .await;
    server.stop().await;

    let seen = record.seen();
    assert_eq!(
        seen[0],
        json!([1, "two", {"three": 3.0, "n": null, "deep": [[{}], []]}, [true, false],
               "emoji 😀 rtl עברית", 4611686018427387904u64, -1.5e-7, "", null])
    );
    let mut rest: Vec<Value> = seen[1..].to_vec();
    rest.sort_by_key(|v| v.to_string());
    assert_eq!(
        rest,
        vec![json!(["bulk", 1]), json!(["bulk", 2]), json!(["later"])]
    );
    assert_eq!(invoice.seen.seen(), vec![json!([42, "eur"])]);
}
