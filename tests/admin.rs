//! The `psychiq` admin commands, run as the real binary against a namespace of their own.

mod common;

use std::time::Duration;

use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::{Job, Retry};
use serde_json::{Value, json};

/// Runs `psychiq ARGS --redis-url URL -n NS`; returns (status, stdout, stderr).
fn admin(ns: &TestNs, args: &[&str]) -> (i32, String, String) {
    let out = psychiq()
        .args(args)
        .args(["--redis-url", &ns.url, "-n", &ns.namespace])
        .output()
        .expect("the psychiq binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (code, out, err) = admin(ns, &with_json);
    assert_eq!(code, 0, "psychiq {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("psychiq {args:?} printed {out:?}: {e}"))
}

#[tokio::test]
async fn enqueue_list_show_and_steer_jobs_from_the_command_line() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();

    // enqueue: now, later, at a time; then the queue and the schedule hold them.
    let now = ok_json(&ns, &["enqueue", "Billing::InvoiceJob", r#"[42, "eur"]"#]);
    let jid = now["jid"].as_str().unwrap().to_string();
    let (code, out, _) = admin(
        &ns,
        &["enqueue", "Echo", "[1]", "--queue", "low", "--in", "600"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("scheduled"), "{out}");
    ok_json(
        &ns,
        &[
            "enqueue",
            "Echo",
            "[2]",
            "--at",
            "2031-01-01T00:00:00Z",
            "--retry",
            "3",
        ],
    );
    let queued = api.queue_jobs("default", 0, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].args(), &json!([42, "eur"]));
    assert_eq!(queued[0].class(), "Billing::InvoiceJob");
    let scheduled = api.set_page(SetKind::Scheduled, 0, 10).await.unwrap();
    assert_eq!(scheduled.len(), 2);
    assert_eq!(scheduled[1].score(), Some(1_924_992_000.0));
    assert_eq!(scheduled[1].item().unwrap()["retry"], 3);

    // queues, jobs, show; the table and the JSON agree.
    let (_, table, _) = admin(&ns, &["queues"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("default") && l.contains(" 1 ")),
        "{table}"
    );
    let queues = ok_json(&ns, &["queues"]);
    assert_eq!(queues[0]["name"], "default");
    let listed = ok_json(&ns, &["jobs", "default"]);
    assert_eq!(listed[0]["jid"], jid.as_str());
    let shown = ok_json(&ns, &["jobs", "default", "show", &jid]);
    assert_eq!(shown["item"]["args"], json!([42, "eur"]));
    let (code, _, err) = admin(&ns, &["jobs", "default", "show", "nope"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: no job with jid \"nope\""), "{err}");

    // Failures to steer: one in retries, one dead.
    for (args, retry) in [("[\"a\"]", Retry::Default), ("[\"b\"]", Retry::Max(0))] {
        ns.client
            .push(
                Job::new("Fail", serde_json::from_str::<Value>(args).unwrap())?
                    .queue("failing")
                    .retry(retry),
            )
            .await?;
    }
    // The binary's demo Fail worker fails them.
    let mut runner = Spawned::start(&ns, &["-s", "demo", "-q", "failing"]);
    wait_until(
        Duration::from_secs(10),
        "one retry and one dead",
        || async {
            api.set_size(SetKind::Retry).await.unwrap() == 1
                && api.set_size(SetKind::Dead).await.unwrap() == 1
        },
    )
    .await;
    runner.signal("TERM");
    assert_eq!(runner.wait_exit(Duration::from_secs(10)), 0);

    let retries = ok_json(&ns, &["retries"]);
    let retry_jid = retries[0]["jid"].as_str().unwrap().to_string();
    assert_eq!(retries[0]["item"]["error_class"], "RuntimeError");
    let (_, table, _) = admin(&ns, &["retries"]);
    assert!(table.contains("RuntimeError"), "{table}");
    let searched = ok_json(&ns, &["retries", "list", "--search", "\"a\""]);
    assert_eq!(searched.as_array().unwrap().len(), 1);
    assert_eq!(
        ok_json(&ns, &["retries", "list", "--search", "zzz"]),
        json!([])
    );
    let dead = ok_json(&ns, &["dead"]);
    let dead_jid = dead[0]["jid"].as_str().unwrap().to_string();

    // kill a retry, retry a dead job, delete, retry-all, clear.
    assert_eq!(
        ok_json(&ns, &["retries", "kill", &retry_jid])["killed"],
        true
    );
    assert_eq!(api.set_size(SetKind::Dead).await?, 2);
    assert_eq!(ok_json(&ns, &["dead", "retry", &dead_jid])["retried"], true);
    let requeued = api.find_in_queue("failing", &dead_jid).await?.unwrap();
    // Retried from the dead set, its retry_count goes down by one, as Ruby's "Retry Now" does.
    assert_eq!(requeued.item().unwrap()["retry_count"], -1);
    assert_eq!(
        ok_json(&ns, &["dead", "delete", &retry_jid])["deleted"],
        true
    );
    assert_eq!(api.set_size(SetKind::Dead).await?, 0);
    let (code, _, err) = admin(&ns, &["dead", "kill", &retry_jid]);
    assert_eq!(code, 2, "{err}");
    // Without a terminal, commands that change many jobs need --yes and change nothing.
    let (code, _, err) = admin(&ns, &["scheduled", "retry-all"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("add --yes"), "{err}");
    assert_eq!(api.set_size(SetKind::Scheduled).await?, 2);
    assert_eq!(
        ok_json(&ns, &["scheduled", "retry-all", "--yes"])["retried"],
        2
    );
    assert_eq!(api.set_size(SetKind::Scheduled).await?, 0);
    assert_eq!(api.queue_size("low").await?, 1);
    let (code, _, err) = admin(&ns, &["jobs", "low", "clear"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(api.queue_size("low").await?, 1);
    assert_eq!(ok_json(&ns, &["jobs", "low", "clear", "-y"])["deleted"], 1);
    let (code, _, err) = admin(&ns, &["jobs", "no-such-queue", "clear", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("there is no queue \"no-such-queue\""), "{err}");
    assert_eq!(
        ok_json(&ns, &["jobs", "default", "delete", &jid])["deleted"],
        true
    );

    // stats agree with what happened.
    let stats = ok_json(&ns, &["stats", "--days", "3"]);
    assert_eq!(stats["stats"]["failed"], 2);
    assert_eq!(stats["history"].as_array().unwrap().len(), 3);
    assert_eq!(stats["history"][0]["failed"], 2);
    Ok(())
}

#[tokio::test]
async fn processes_can_be_listed_quieted_and_stopped() {
    let ns = TestNs::new().await;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-g", "billing"]);
    let identity = ns.registered_identity().await;
    let listed = ok_json(&ns, &["processes"]);
    assert_eq!(listed[0]["identity"], identity.as_str());
    let (_, table, _) = admin(&ns, &["processes"]);
    assert!(
        table.contains("billing") && table.contains("running"),
        "{table}"
    );

    ok_json(&ns, &["processes", "quiet", &identity]);
    wait_until(Duration::from_secs(8), "quiet", || async {
        ok_json(&ns, &["processes"])[0]["quiet"] == true
    })
    .await;
    let (code, _, err) = admin(&ns, &["processes", "stop", "nobody:1:abc"]);
    assert_eq!(code, 2);
    assert!(err.contains("psychiq processes"), "{err}");
    ok_json(&ns, &["processes", "stop", &identity]);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    assert_eq!(ok_json(&ns, &["processes"]), json!([]));
}

#[test]
fn bad_input_exits_2_with_one_line_saying_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["enqueue", "Echo", "not json"],
            "ARGS must be a JSON array",
        ),
        (
            &["enqueue", "Echo", r#"{"a":1}"#],
            "ARGS must be a JSON array",
        ),
        (&["enqueue", "Echo", "[]", "--at", "tomorrow"], "RFC 3339"),
        (&["enqueue", "Echo", "[]", "--at", "1e20"], "RFC 3339"),
        (&["enqueue", "Echo", "[]", "--in", "1e300"], "--in takes"),
        (
            &["enqueue", "Echo", "[]", "--retry", "lots"],
            "--retry takes a number",
        ),
        (
            &["enqueue", "Echo", "[]", "--in", "5", "--at", "0"],
            "cannot be used with",
        ),
        (&["stats", "--days", "999"], "999"),
        (&["retries", "list", "--per-page", "0"], "0"),
        (
            &["-c", "5", "stats"],
            "--concurrency applies to the server only",
        ),
        (&["retries", "frobnicate"], "unrecognized subcommand"),
    ];
    for (args, expected) in cases {
        let out = psychiq()
            .args(*args)
            .args(["-p", "1"]) // never reached: input is checked first
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
    // An unreachable Redis is not bad input: status 1, one line.
    let out = psychiq().args(["stats", "-p", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: Redis at") && err.lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains("apt-get install redis-server"),
        "says how to get one: {err}"
    );
}

#[tokio::test]
async fn jobs_are_found_however_their_json_is_spaced_and_at_takes_offsets() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    // As Python's json.dumps writes it: a space after every colon and comma.
    let spaced = r#"{"class": "Py", "args": [1, 2], "jid": "spaced0000000000000000000", "queue": "default"}"#;
    let () = ns
        .query(
            redis::cmd("ZADD")
                .arg(ns.keys().dead())
                .arg(1_795_714_900.0)
                .arg(spaced),
        )
        .await;
    let shown = ok_json(&ns, &["dead", "show", "spaced0000000000000000000"]);
    assert_eq!(shown["jid"], "spaced0000000000000000000");
    assert_eq!(
        ok_json(&ns, &["dead", "retry", "spaced0000000000000000000"])["retried"],
        true
    );
    assert_eq!(api.queue_size("default").await?, 1);

    // 10:00 at +05:00 is 05:00 UTC.
    let at = ok_json(
        &ns,
        &[
            "enqueue",
            "Later",
            "[]",
            "--at",
            "2030-01-01T10:00:00+05:00",
        ],
    );
    let job = api
        .set_find(SetKind::Scheduled, at["jid"].as_str().unwrap())
        .await?
        .unwrap();
    assert_eq!(job.score(), Some(1_893_474_000.0));
    Ok(())
}

/// The original Lisp Psychiq writes whole seconds (`"enqueued_at":1796599381`); they were
/// read as Sidekiq 8's milliseconds (a latency of 20,773 days, dates in 1970). Timestamps
/// are now read by their magnitude: Lisp's seconds, Sidekiq 7's float seconds and Sidekiq
/// 8's milliseconds all give the same latency and date.
#[tokio::test]
async fn whole_second_timestamps_are_seconds_and_milliseconds_milliseconds() {
    let ns = TestNs::new().await;
    let now = psychiq::__private::now_secs();
    let written = [
        json!((now - 60.0).floor() as i64),
        json!(now - 60.0),
        json!(((now - 60.0) * 1000.0) as i64),
    ];
    for (i, at) in written.iter().enumerate() {
        let raw = format!(
            r#"{{"class":"Lisp","args":[{i}],"jid":"j{i}","queue":"q{i}","enqueued_at":{at},"created_at":{at}}}"#
        );
        ns.lpush_raw(&format!("q{i}"), &raw).await;
        let () = ns
            .query(
                redis::cmd("SADD")
                    .arg(ns.keys().queues())
                    .arg(format!("q{i}")),
            )
            .await;
    }
    let queues = ok_json(&ns, &["queues"]);
    for queue in queues.as_array().unwrap() {
        let latency = queue["latency"].as_f64().unwrap();
        assert!((59.0..70.0).contains(&latency), "{queue}");
    }
    let (code, shown, _) = admin(&ns, &["jobs", "q0"]);
    assert_eq!(code, 0);
    assert!(!shown.contains("1970"), "{shown}");
}

/// `--json` prints the payload's own text: an integer past 64 bits keeps its digits (it was
/// printed as `1.8446744073709552e+19`), as Ruby Sidekiq keeps them.
#[tokio::test]
async fn json_output_keeps_the_payloads_numbers_exactly() {
    let ns = TestNs::new().await;
    let raw = r#"{"class":"Big","args":[18446744073709551617,1e3],"jid":"big","queue":"default","enqueued_at":1700000000.5}"#;
    ns.lpush_raw("default", raw).await;
    let () = ns
        .query(redis::cmd("SADD").arg(ns.keys().queues()).arg("default"))
        .await;
    let _: u64 = ns
        .query(
            redis::cmd("ZADD")
                .arg(ns.keys().retry())
                .arg(1_700_000_100)
                .arg(raw),
        )
        .await;
    for args in [vec!["jobs", "default"], vec!["retries"]] {
        let mut with_json = args.clone();
        with_json.push("--json");
        let (code, out, err) = admin(&ns, &with_json);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains("[18446744073709551617,1e3]"),
            "{args:?}: {out}"
        );
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed[0]["jid"], "big");
    }
    // The API keeps them too.
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    let job = api.set_find(SetKind::Retry, "big").await.unwrap().unwrap();
    assert_eq!(job.field_json("args"), Some("[18446744073709551617,1e3]"));
    assert_eq!(job.display_args(), "[18446744073709551617,1e3]");
    assert_eq!(job.field_json("nope"), None);
}

/// Tables say which Redis and namespace they read; a namespace holding nothing (a typo in
/// -n) warns and lists the namespaces that do hold jobs; a queue that does not exist is an
/// error, not an empty table.
#[tokio::test]
async fn admin_output_names_its_redis_and_namespace_and_an_empty_one_warns() {
    let own = OwnRedis::start();
    let redis = psychiq::RedisConfig::from_url(own.url()).unwrap();
    let client = psychiq::Client::connect(&redis, "billing").await.unwrap();
    client.push(Job::new("X", ()).unwrap()).await.unwrap();
    let run = |namespace: &str, args: &[&str]| {
        let out = psychiq()
            .args(args)
            .args(["--redis-url", &format!("{}/0", own.url()), "-n", namespace])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out) = run("billing", &["stats"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("Redis {}/0 · namespace \"billing\"\n", own.url())),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
    let (code, err) = run("biling", &["queues"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: nothing is stored under namespace \"biling\"")
            && err.contains("these namespaces hold jobs: \"billing\""),
        "{err}"
    );
    let (code, err) = run("billing", &["jobs", "nosuchqueue"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("there is no queue \"nosuchqueue\""), "{err}");
}

/// The API in Sidekiq's shape: a value per structure with its verbs, and each job found
/// carrying the verbs that act on it.
#[tokio::test]
async fn queues_and_sets_have_sidekiqs_verbs() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = ns.jobs.api().await?;
    let keys = ns.keys();
    let jid = |n: u8| format!("{n:024x}");
    for n in 1..=3 {
        ns.client
            .push(Job::new("Shape", (n,))?.queue("shape").jid(jid(n)))
            .await?;
    }
    let payload = |n: u8, queue: &str| {
        json!({"class": "Shape", "args": [n], "queue": queue, "jid": jid(n), "retry": true,
               "retry_count": 2, "created_at": 1795714853.5, "enqueued_at": 1795714853.5})
        .to_string()
    };
    let mut pipe = redis::pipe();
    pipe.zadd(keys.retry(), payload(4, "shape"), 1_795_714_900.0)
        .zadd(keys.dead(), payload(5, "shape"), 1_795_714_901.0)
        .zadd(keys.schedule(), payload(6, "shape"), 1_995_714_900.0);
    // A jid of its own that looks like the dashboard's SCORE-JID key is still a jid.
    pipe.zadd(
        keys.retry(),
        json!({"class": "Shape", "args": [7], "queue": "shape", "jid": "42-nightly"}).to_string(),
        1_795_714_950.0,
    );
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let nightly = api
        .retries()
        .find("42-nightly")
        .await?
        .expect("found by its jid");
    assert!(nightly.delete().await?);

    let queue = api.queue("shape");
    assert_eq!((queue.name(), queue.size().await?), ("shape", 3));
    assert!(queue.exists().await? && !api.queue("nosuch").exists().await?);
    assert_eq!(queue.page(0, 2).await?.len(), 2);
    let two = queue
        .find(&jid(2))
        .await?
        .expect("job 2 waits in the queue");
    assert_eq!(two.args(), &json!([2]));
    assert!(two.delete().await?);
    assert!(!two.delete().await?, "gone already");
    assert!(queue.pause().await? && !queue.pause().await?);
    assert!(queue.unpause().await?);

    // Retry now: back to its queue, its retry count lowered as Sidekiq's "Retry Now" does.
    let retrying = api
        .retries()
        .find(&jid(4))
        .await?
        .expect("in the retry set");
    assert_eq!(retrying.kind(), SetKind::Retry);
    assert!(retrying.retry_now().await?);
    assert_eq!(api.retries().size().await?, 0);
    let back = queue.find(&jid(4)).await?.expect("back in its queue");
    assert_eq!(back.retry_count(), Some(1));

    let scheduled = api.scheduled().find(&jid(6)).await?.expect("scheduled");
    assert!(scheduled.add_to_queue().await?);
    assert_eq!(api.scheduled().size().await?, 0);
    let dead = api.dead().page(0, 10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(api.dead().search(&jid(5), 10).await?.len(), 1);
    assert!(dead[0].delete().await?);
    let killed = queue.find(&jid(1)).await?.expect("job 1 waits");
    assert!(api.kill(None, &killed).await?);
    assert_eq!(api.dead().size().await?, 1);
    assert_eq!(api.dead().retry_all().await?, 1);
    assert_eq!(queue.size().await?, 4, "jobs 1, 3, 4 and 6");
    assert_eq!(queue.clear().await?, 4);
    assert_eq!(queue.size().await?, 0);
    Ok(())
}
