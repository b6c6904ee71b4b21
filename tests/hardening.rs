//! Bad bytes, failed logins and leaked secrets: what a probe broke, each case tried against a
//! real Redis (a private `redis-server` where the test changes its settings).
//!
//! The rule: payloads and names are bytes. What is not UTF-8 (or not JSON) is a bad job in
//! the dead set with a clear error and its exact bytes, never an outage or a stranded job;
//! a name that is not UTF-8 is shown escaped and can be acted on. A Redis that refuses the
//! login for a while is logged in to again once it accepts.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::{FetchMode, Registry};
use serde_json::{Value, json};

/// A job for `Record` whose argument is the byte 0xFF: not UTF-8, so not JSON either.
const BAD: &[u8] = b"{\"class\":\"Record\",\"args\":[\"\xff\"],\"jid\":\"bad\"}";

/// Not JSON, and not UTF-8.
const NOT_JSON: &[u8] = b"\xff\xfe not json {";

fn record_job(i: usize) -> String {
    format!(r#"{{"class":"Record","args":[{i}],"jid":"good{i}","queue":"default"}}"#)
}

async fn inprogress_keys(ns: &TestNs) -> Vec<Vec<u8>> {
    ns.query(redis::cmd("KEYS").arg(format!("{}:inprogress:*", ns.namespace)))
        .await
}

/// The one dead job, checked to be the bad payload wrapped with its exact bytes.
async fn assert_bad_job_is_dead_with_its_bytes(ns: &TestNs) {
    let dead = ns.zrange(&ns.keys().dead()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["class"], "Psychiq::InvalidPayload");
    assert!(
        dead["error_message"]
            .as_str()
            .unwrap()
            .contains("not valid UTF-8"),
        "{dead}"
    );
    let kept = base64::engine::general_purpose::STANDARD
        .decode(dead["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept, BAD, "the exact bytes are kept");
    assert!(
        dead["args"][0].as_str().unwrap().contains(r"\xff"),
        "{dead}"
    );
}

#[tokio::test]
async fn a_scheduled_member_that_is_not_utf8_stops_no_other_job() {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    let now = psychiq::__private::now_secs();
    let mut pipe = redis::pipe();
    pipe.zadd(keys.schedule(), BAD, now - 1.0).ignore();
    pipe.zadd(keys.retry(), BAD, now - 1.0).ignore();
    // Not JSON either: wrapped by the scheduler itself, even if no server serves `default`.
    pipe.zadd(keys.schedule(), NOT_JSON, now - 1.0).ignore();
    for i in 0..5 {
        pipe.zadd(keys.schedule(), record_job(i), now - 1.0)
            .ignore();
    }
    pipe.zadd(keys.retry(), record_job(5), now - 1.0).ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    wait_until(Duration::from_secs(10), "every good job run", || async {
        record.count() == 6
    })
    .await;
    wait_until(
        Duration::from_secs(10),
        "the three bad jobs dead",
        || async { ns.zrange(&keys.dead()).await.len() == 3 },
    )
    .await;
    server.stop().await;
    let dead = ns.zrange(&keys.dead()).await;
    for dead in dead {
        let dead: Value = serde_json::from_str(&dead).unwrap();
        let kept = base64::engine::general_purpose::STANDARD
            .decode(dead["raw_base64"].as_str().unwrap())
            .unwrap();
        if kept == NOT_JSON {
            assert!(
                dead["args"][0].as_str().unwrap().contains(r"\xff"),
                "{dead}"
            );
            continue;
        }
        // The bytes as they were queued: the scheduler stamped `enqueued_at`, nothing else.
        let unstamped = &BAD[..BAD.len() - 1];
        assert_eq!(&kept[..unstamped.len()], unstamped);
        assert!(kept[unstamped.len()..].starts_with(b",\"enqueued_at\":"));
    }
    assert!(inprogress_keys(&ns).await.is_empty());
}

async fn a_queued_job_that_is_not_utf8_strands_nobody(fetch: FetchMode) {
    let ns = TestNs::new().await;
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.lpush(ns.keys().queue("default"), record_job(i))
            .ignore();
    }
    pipe.lpush(ns.keys().queue("default"), BAD).ignore();
    for i in 10..20 {
        pipe.lpush(ns.keys().queue("default"), record_job(i))
            .ignore();
    }
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    let record = Record::default();
    let config = ns.config().concurrency(5).fetch(fetch);
    let server = RunningServer::start(config, registry_with(&record));
    wait_until(Duration::from_secs(10), "the innocent jobs run", || async {
        record.count() == 20
    })
    .await;
    wait_until(Duration::from_secs(10), "the bad job dead", || async {
        !ns.zrange(&ns.keys().dead()).await.is_empty()
    })
    .await;
    server.stop().await;
    assert_bad_job_is_dead_with_its_bytes(&ns).await;
    assert!(inprogress_keys(&ns).await.is_empty(), "nothing stranded");
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 21);
    assert_eq!(ns.get_u64(&ns.keys().stat("failed")).await, 1);
}

#[tokio::test]
async fn a_queued_job_that_is_not_utf8_strands_nobody_with_reliable_fetch() {
    a_queued_job_that_is_not_utf8_strands_nobody(FetchMode::Reliable).await;
}

#[tokio::test]
async fn a_queued_job_that_is_not_utf8_strands_nobody_with_basic_fetch() {
    a_queued_job_that_is_not_utf8_strands_nobody(FetchMode::Basic).await;
}

#[tokio::test]
async fn recovery_moves_bad_bytes_and_goes_on_past_a_bad_owner() {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    // Two processes that died holding jobs (no heartbeat), one with the bad payload, and an
    // owner whose identity is not UTF-8 (nobody's; it must not stop the pass).
    let mut pipe = redis::pipe();
    pipe.sadd(keys.inprogress_owners(), "gone-a:1:aaaaaaaaaaaa")
        .ignore()
        .sadd(keys.inprogress_owners(), "gone-b:2:bbbbbbbbbbbb")
        .ignore()
        .sadd(keys.inprogress_owners(), &b"gone-\xff:3:cccccccccccc"[..])
        .ignore()
        .lpush(keys.inprogress("gone-a:1:aaaaaaaaaaaa", "default"), BAD)
        .ignore()
        .lpush(
            keys.inprogress("gone-a:1:aaaaaaaaaaaa", "default"),
            record_job(1),
        )
        .ignore()
        .lpush(
            keys.inprogress("gone-b:2:bbbbbbbbbbbb", "default"),
            record_job(2),
        )
        .ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    wait_until(Duration::from_secs(15), "recovered jobs run", || async {
        record.count() == 2
    })
    .await;
    wait_until(Duration::from_secs(10), "the bad job dead", || async {
        !ns.zrange(&keys.dead()).await.is_empty()
    })
    .await;
    server.stop().await;
    assert_bad_job_is_dead_with_its_bytes(&ns).await;
    assert!(inprogress_keys(&ns).await.is_empty());
}

/// Names that are not UTF-8 (and carry ESC and CR) in every set the tools read.
async fn seed_bad_names(ns: &TestNs) {
    let k = |name: &str| ns.keys().key(name).into_bytes();
    let concat = |a: Vec<u8>, b: &[u8]| [a, b.to_vec()].concat();
    let now = psychiq::__private::now_secs();
    let mut pipe = redis::pipe();
    pipe.sadd(k("queues"), &b"bad\xff\x1b[2Jq\r"[..])
        .ignore()
        .lpush(concat(k("queue:"), b"bad\xff\x1b[2Jq\r"), record_job(1))
        .ignore()
        .sadd(k("processes"), &b"host\xff:1:abc"[..])
        .ignore()
        .hset_multiple(
            concat(k(""), b"host\xff:1:abc"),
            &[
                ("info", r#"{"hostname":"h","concurrency":5,"queues":["x"]}"#),
                ("busy", "0"),
                ("beat", &now.to_string()),
            ],
        )
        .ignore()
        .sadd(k("metrics:classes"), &b"Cls\xff\r\n"[..])
        .ignore()
        .hset_multiple(
            concat(k("metrics:class:"), b"Cls\xff\r\n"),
            &[("count", "3"), ("failed", "1"), ("secs", "0.5")],
        )
        .ignore()
        .zadd(k("dead"), BAD, now)
        .ignore()
        .zadd(
            k("dead"),
            "{\"class\":\"Esc\\u001b\",\"args\":[],\"jid\":\"esc1\",\"error_class\":\"E\",\"error_message\":\"boom\\u0007\\u001b[31m\"}",
            now,
        )
        .ignore()
        .set(k("stat:processed"), "not a number")
        .ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
}

#[tokio::test]
async fn names_that_are_not_utf8_are_shown_escaped_and_can_be_acted_on() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    seed_bad_names(&ns).await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let stats = api.stats().await?;
    assert_eq!(
        stats.processed, 0,
        "a counter that is not a number reads as 0"
    );
    let queue = r"bad\xff\x1b[2Jq\x0d";
    assert_eq!(stats.queues[0].name, queue);
    assert_eq!(stats.queues[0].size, 1);
    let processes = api.processes().await?;
    assert_eq!(processes[0].identity, r"host\xff:1:abc");
    assert_eq!(api.class_metrics().await?[0].class, r"Cls\xff\x0d\x0a");
    let dead = api.set_page(SetKind::Dead, 0, 10).await?;
    assert_eq!(dead.len(), 2);
    let bad = dead.iter().find(|j| !j.is_utf8()).expect("the bad member");
    assert_eq!(bad.raw_bytes(), BAD);

    // The admin commands print them, escaped: no control character reaches the terminal.
    for args in [
        &["queues"][..],
        &["dead"],
        &["processes"],
        &["stats"],
        &["jobs", queue],
        &["dead", "show", "esc1"],
    ] {
        let out = psychiq()
            .args(["--redis-url", &ns.url, "-n", &ns.namespace])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'),
            "{args:?}: {stdout:?}"
        );
    }

    // And act on them by the name shown.
    assert_eq!(api.queue_jobs(queue, 0, 10).await?.len(), 1);
    let processes_pid = processes[0].identity.clone();
    api.quiet(&processes_pid).await?;
    let signals: Vec<Vec<u8>> = ns
        .query(
            redis::cmd("LRANGE")
                .arg([ns.keys().key("").as_bytes(), b"host\xff:1:abc-signals"].concat())
                .arg(0)
                .arg(-1),
        )
        .await;
    assert_eq!(signals, vec![b"TSTP".to_vec()]);
    let out = psychiq()
        .args([
            "--redis-url",
            &ns.url,
            "-n",
            &ns.namespace,
            "jobs",
            queue,
            "clear",
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.queues().await?.is_empty());
    assert!(api.delete(SetKind::Dead, bad).await?);
    assert_eq!(api.set_size(SetKind::Dead).await?, 1);
    Ok(())
}

#[tokio::test]
async fn untouched_fields_survive_a_retry_byte_for_byte() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // An integer past 64 bits, a float spelled 1e3 and an escaped character, for a class
    // this server does not know (it is retried).
    let raw = r#"{"class":"Elsewhere","args":[123456789012345678901234567890,1e3,"\u00e9"],"jid":"big","queue":"default"}"#;
    ns.lpush_raw("default", raw).await;
    let server = RunningServer::start(ns.config(), Registry::new());
    wait_until(Duration::from_secs(10), "the retry", || async {
        !ns.zrange(&ns.keys().retry()).await.is_empty()
    })
    .await;
    server.stop().await;
    let retry = &ns.zrange(&ns.keys().retry()).await[0];
    assert!(
        retry.contains(r#""args":[123456789012345678901234567890,1e3,"\u00e9"]"#),
        "{retry}"
    );
    Ok(())
}

#[tokio::test]
async fn the_scheduler_stamps_only_a_top_level_enqueued_at() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    let now = psychiq::__private::now_secs();
    let null = r#"{"class":"X","args":[{"enqueued_at":5}],"jid":"n","enqueued_at":null}"#;
    let text = r#"{"class":"X","args":[{"enqueued_at":5}],"jid":"s","enqueued_at":"soon"}"#;
    // As Python writes it: spaced at the top, compact inside args.
    let spaced = r#"{"class": "X", "args": [{"enqueued_at":5}], "jid": "p", "enqueued_at": 1.5}"#;
    let mut pipe = redis::pipe();
    pipe.zadd(keys.schedule(), null, now - 1.0)
        .ignore()
        .zadd(keys.schedule(), text, now - 1.0)
        .ignore()
        .zadd(keys.schedule(), spaced, now - 1.0)
        .ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let mut conn = ns.conn();
    assert_eq!(
        psychiq::__private::enqueue_due(&mut conn, &keys)
            .await
            .unwrap(),
        3
    );
    for raw in ns.lrange(&keys.queue("default")).await {
        let job: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(job["args"][0]["enqueued_at"], 5, "args left alone: {raw}");
    }
    Ok(())
}

#[tokio::test]
async fn a_huge_error_message_is_cut_in_the_log_too() {
    let ns = TestNs::new().await;
    let message = "x".repeat(1_000_000);
    let job = json!({"class": "Fail", "args": [message], "jid": "huge", "retry": 1});
    ns.lpush_raw("default", &job.to_string()).await;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "2"]);
    wait_until(Duration::from_secs(10), "the failure recorded", || async {
        !ns.zrange(&ns.keys().retry()).await.is_empty()
    })
    .await;
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10));
    let log = server.log_text();
    assert!(log.contains("job failed"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 12_000, "a log line of {longest} bytes");
}

#[test]
fn secrets_stay_out_of_help_errors_and_job_programs() {
    // --help with REDIS_URL set does not print it.
    let out = psychiq()
        .arg("--help")
        .env("REDIS_URL", "redis://:topsecret@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("topsecret"));
    // Start-up errors hide a password given as a query parameter or holding a '/' (which
    // is refused with the flags, exit 2, before any connection).
    for (url, code) in [
        (
            "redis+unix:///nonexistent/redis.sock?db=0&pass=topsecret",
            1,
        ),
        ("redis://:top/secret@127.0.0.1:1", 2),
    ] {
        let out = psychiq()
            .args(["-s", "demo", "--redis-url", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(!stderr.contains("secret"), "{stderr}");
        assert!(stderr.contains("***"), "{stderr}");
    }
}

#[tokio::test]
async fn job_programs_get_no_redis_credentials() {
    let ns = TestNs::new().await;
    let dir = std::env::temp_dir().join(format!("{}-env", ns.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = dir.join("env.txt");
    let toml = dir.join("workers.toml");
    std::fs::write(
        &toml,
        format!(
            "[workers.\"Env\"]\ncommand = [\"sh\", \"-c\", \"env > {}\"]\n",
            seen.display()
        ),
    )
    .unwrap();
    ns.lpush_raw("default", r#"{"class":"Env","args":[],"jid":"env"}"#)
        .await;
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut server = psychiq()
        .args(["-n", &ns.namespace, "-s", toml.to_str().unwrap()])
        .env("REDIS_URL", &ns.url)
        .env("PSYCHIQ_WEB_TOKEN", "topsecret")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the program to run", || async {
        std::fs::read_to_string(&seen).is_ok_and(|env| env.contains("PSYCHIQ_JID=env"))
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(!env.contains("REDIS_URL"), "{env}");
    assert!(!env.contains("topsecret"), "{env}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP GET to a dashboard on loopback: the status code, or 0 if it did not answer.
fn http_status(port: u16, path: &str) -> u16 {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Logs in with `url`; `refuse` makes Redis refuse that login (run through `admin`, a
/// redis-cli that stays logged in), then every client is cut off, and 6 s later `accept`
/// lets the login in again: the server and the dashboard must come back by themselves.
async fn survive_a_refused_login(
    url: &str,
    admin: impl Fn(&[&str]) -> String,
    refuse: &[&str],
    accept: &[&str],
) {
    let ns = TestNs::on(url).await;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "2"]);
    let web_port = free_port();
    let web_log = std::env::temp_dir().join(format!("{}-web.log", ns.namespace));
    let mut web = psychiq()
        .args(["--redis-url", url, "-n", &ns.namespace, "web", "--bind"])
        .arg(format!("127.0.0.1:{web_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&web_log).unwrap())
        .spawn()
        .unwrap();
    ns.registered_identity().await;
    wait_until(Duration::from_secs(10), "the dashboard up", || async {
        http_status(web_port, "/api/stats") == 200
    })
    .await;

    assert_eq!(admin(refuse).trim(), "OK");
    admin(&["CLIENT", "KILL", "TYPE", "normal"]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_ne!(
        http_status(web_port, "/api/stats"),
        200,
        "the login is refused meanwhile"
    );
    assert_eq!(admin(accept).trim(), "OK");

    // Pushed through the test's own library client, which must log in again itself.
    let out = std::env::temp_dir().join(format!("{}-echo.jsonl", ns.namespace));
    let job = json!({"class": "Echo", "args": [out.to_string_lossy(), "after"], "jid": "after"});
    ns.lpush_raw("default", &job.to_string()).await;
    wait_until(
        Duration::from_secs(30),
        "the job to run once the login works again",
        || async { std::fs::read_to_string(&out).is_ok_and(|text| text.contains("after")) },
    )
    .await;
    wait_until(
        Duration::from_secs(15),
        "the dashboard to answer again",
        || async { http_status(web_port, "/api/stats") == 200 },
    )
    .await;
    let _ = web.kill();
    let _ = web.wait();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    let log = server.log_text();
    assert!(log.contains("Redis refused the login"), "{log}");
    assert!(log.contains("Redis is back"), "{log}");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&web_log);
}

#[tokio::test]
async fn a_password_rotated_and_back_is_logged_in_with_again() {
    let redis = OwnRedis::start();
    // The test's redis-cli logs in as an ACL user whose password never changes.
    redis.cli(&[
        "ACL", "SETUSER", "admin", "on", ">adminpw", "~*", "&*", "+@all",
    ]);
    redis.cli(&["CONFIG", "SET", "requirepass", "s3cret"]);
    let admin = |args: &[&str]| {
        let mut all = vec!["--user", "admin", "--pass", "adminpw", "--no-auth-warning"];
        all.extend_from_slice(args);
        redis.cli(&all)
    };
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    survive_a_refused_login(
        &url,
        admin,
        &["CONFIG", "SET", "requirepass", "rotated"],
        &["CONFIG", "SET", "requirepass", "s3cret"],
    )
    .await;
}

#[tokio::test]
async fn an_acl_user_whose_password_changed_and_back_is_logged_in_with_again() {
    let redis = OwnRedis::start();
    redis.cli(&["ACL", "SETUSER", "app", "on", ">apppw", "~*", "&*", "+@all"]);
    let url = format!("redis://app:apppw@127.0.0.1:{}", redis.port);
    survive_a_refused_login(
        &url,
        |args| redis.cli(args),
        &["ACL", "SETUSER", "app", "resetpass", ">other"],
        &["ACL", "SETUSER", "app", "resetpass", ">apppw"],
    )
    .await;
}

/// What a client is told when Redis refuses a command for a reason that is not a lost
/// connection: the error names the cause and what to do.
#[tokio::test]
async fn redis_errors_that_are_not_outages_are_named() {
    let redis = OwnRedis::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@read",
        "+@connection",
    ]);
    redis.cli(&["ACL", "SETUSER", "locked", "on", ">pw", "~*", "&*", "+@all"]);
    let message = |url: String| async move {
        let config = psychiq::RedisConfig::from_url(url).unwrap();
        match psychiq::Client::connect(&config, "named").await {
            Err(e) => e.to_string(),
            Ok(client) => client
                .push(psychiq::Job::new("X", json!([])).unwrap())
                .await
                .expect_err("the push is refused")
                .to_string(),
        }
    };
    let port = redis.port;
    let wrong = message(format!("redis://locked:wrong@127.0.0.1:{port}")).await;
    assert!(wrong.contains("Redis refused the login"), "{wrong}");
    assert!(!wrong.contains(":wrong@"), "{wrong}");
    let noperm = message(format!("redis://reader:pw@127.0.0.1:{port}")).await;
    assert!(noperm.contains("lacks a permission"), "{noperm}");

    // Out of memory: a limit below what it holds, and no eviction.
    let mut direct = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("SET")
        .arg("ballast")
        .arg("x".repeat(2_000_000))
        .query(&mut direct)
        .unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let oom = message(redis.url()).await;
    assert!(oom.contains("out of memory"), "{oom}");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);

    // A script that runs past busy-reply-threshold makes Redis answer BUSY to everyone.
    redis.cli(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let mut script = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "EVAL", "while true do end", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let busy = message(redis.url()).await;
    redis.cli(&["SCRIPT", "KILL"]);
    let _ = script.wait();
    assert!(busy.contains("busy running a long script"), "{busy}");

    // A replica (of a master that is not there) refuses writes.
    redis.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    let readonly = message(redis.url()).await;
    assert!(readonly.contains("read-only replica"), "{readonly}");
}

/// A log stream that cannot be written (`/dev/full` answers every write with "no space
/// left", as a full disk does) made the server exit at once with status 0, its jobs left in
/// progress. Now its lines are dropped and counted, and it runs until told to stop. A
/// closed terminal (SIGHUP) is a graceful stop, as TERM.
#[tokio::test]
async fn a_log_stream_that_cannot_be_written_stops_nothing_and_hup_stops_gracefully() {
    let ns = TestNs::new().await;
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // The log path is only read back (and removed) by the helper: one that never exists.
    let unread = std::env::temp_dir().join(format!("{}-unwritten.log", ns.namespace));
    let mut server = Spawned::start_logging_to(&ns, &["-s", "demo", "-c", "5"], full, unread);
    let path = std::env::temp_dir().join(format!("{}-full.jsonl", ns.namespace));
    let path_text = path.to_string_lossy().to_string();
    let jobs: Vec<psychiq::Job> = (0..3_000)
        .map(|i| psychiq::Job::new("Echo", (&path_text, i)).unwrap())
        .collect();
    ns.client.push_bulk(jobs).await.unwrap();
    let lines = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until(Duration::from_secs(60), "every job to run", || async {
        lines() >= 3_000
    })
    .await;
    assert_eq!(
        server.wait_status(Duration::from_millis(500)),
        None,
        "still running"
    );
    server.signal("HUP");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    assert!(
        inprogress_keys(&ns).await.is_empty(),
        "nothing left in progress"
    );
    let processes: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(ns.keys().key("processes")))
        .await;
    assert!(processes.is_empty(), "deregistered: {processes:?}");
    let _ = std::fs::remove_file(&path);
}

/// Per-job log lines go through a buffer that one thread writes out: a stderr nobody reads
/// (a full pipe) blocks only that thread. Every job runs; when the buffer (64 KB here) is
/// full, lines are dropped and the count is said once stderr moves again; no line is lost
/// silently, and each job's `start` comes before its `done`.
#[tokio::test]
async fn a_blocked_stderr_never_holds_up_jobs_and_dropped_lines_are_counted() {
    let ns = TestNs::new().await;
    let mut child = KillOnDrop(
        psychiq()
            .args([
                "--redis-url",
                &ns.url,
                "-n",
                &ns.namespace,
                "-s",
                "demo",
                "-c",
                "5",
            ])
            .env("PSYCHIQ_LOG_BUFFER", "65536")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    const JOBS: u64 = 3_000;
    let jobs: Vec<psychiq::Job> = (0..JOBS)
        .map(|_| psychiq::Job::new("Noop", ()).unwrap())
        .collect();
    ns.client.push_bulk(jobs).await.unwrap();
    let processed = ns.keys().stat("processed");
    wait_until(Duration::from_secs(60), "every job to run", || async {
        ns.get_u64(&processed).await >= JOBS
    })
    .await;
    // Only now is the pipe read: until here nothing was.
    let mut stderr = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    assert!(child.terminate(), "a graceful stop");
    let text = reader.join().unwrap();

    let dropped: u64 = text
        .lines()
        .filter_map(|l| {
            l.split("psychiq: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        dropped > 0,
        "a 64 KB buffer overflowed: {}",
        &text[..text.len().min(2_000)]
    );
    assert!(text.contains("log lines could not be written"));
    let mut done = std::collections::HashSet::new();
    let (mut starts, mut dones) = (0, 0);
    for line in text.lines() {
        let Some(jid) = line.split(" jid=").nth(1).and_then(|r| r.split(' ').next()) else {
            continue;
        };
        if line.contains(": start ") {
            starts += 1;
            assert!(!done.contains(jid), "a start after its done: {line}");
        } else if line.contains(": done ") {
            dones += 1;
            done.insert(jid.to_string());
        }
    }
    assert!(
        starts > 0 && dones > 0,
        "{}",
        &text[..text.len().min(2_000)]
    );
    assert!(
        starts + dones + dropped >= 2 * JOBS,
        "{starts} start and {dones} done lines, {dropped} dropped: some vanished"
    );
}

/// Held connections (a slowloris: headers that never end, or sockets opened and left idle)
/// are closed after the header timeout, and the dashboard answers meanwhile.
#[tokio::test]
async fn the_dashboard_closes_connections_that_never_finish_their_headers() {
    let ns = TestNs::new().await;
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut web = KillOnDrop(
        psychiq()
            .args([
                "--redis-url",
                &ns.url,
                "-n",
                &ns.namespace,
                "web",
                "--bind",
                &bind,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "the dashboard", || async {
        http_status(port, "/") == 200
    })
    .await;
    let held: Vec<std::net::TcpStream> = (0..50)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            if i % 2 == 0 {
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .unwrap();
            }
            stream
        })
        .collect();
    assert_eq!(http_status(port, "/"), 200, "answers while they are held");
    let started = std::time::Instant::now();
    for mut stream in held {
        stream
            .set_read_timeout(Some(psychiq::web::HEADER_TIMEOUT * 3))
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the server: the read ends (with a 408 or nothing), it does not time out.
        let read = stream.read_to_end(&mut rest);
        assert!(read.is_ok(), "{read:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited < psychiq::web::HEADER_TIMEOUT * 2,
        "closed after {waited:?}"
    );
    assert!(web.terminate(), "a graceful stop");
}

/// Redis does not roll a transaction back when one of its commands fails: a failed job
/// whose retry set was overwritten by another program (a string) used to leave its
/// in-progress hash while its retry was never written, and was lost. It now stays in the
/// hash (and runs again when that is recovered); the next job is not held up.
#[tokio::test]
async fn a_failure_that_cannot_be_written_keeps_the_job() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let () = ns
        .query(
            redis::cmd("SET")
                .arg(ns.keys().retry())
                .arg("not a sorted set"),
        )
        .await;
    let record = Record::default();
    let server = RunningServer::start(ns.config().concurrency(1), registry_with(&record));
    ns.client
        .push(psychiq::Job::new("Flaky", ("kept",))?)
        .await?;
    ns.client
        .push(psychiq::Job::new("Record", ("after",))?)
        .await?;
    wait_until(Duration::from_secs(10), "the next job", || async {
        record.count() == 1
    })
    .await;
    let held = || async {
        let mut held = Vec::new();
        for hash in inprogress_keys(&ns).await {
            let values: Vec<String> = ns.query(redis::cmd("HVALS").arg(&hash)).await;
            held.extend(values);
        }
        held
    };
    wait_until(Duration::from_secs(5), "the failed job kept", || async {
        held().await.iter().any(|job| job.contains("kept"))
    })
    .await;
    server.stop().await;
    let after_stop = held().await;
    assert!(
        after_stop.iter().any(|job| job.contains("kept")),
        "still held after the stop, for the next server to recover: {after_stop:?}"
    );
    Ok(())
}

/// A Redis outage is one ERROR line when it starts and one line when it ends (not one per
/// part of the server), and work resumes within about a second of Redis answering again.
#[tokio::test]
async fn an_outage_is_two_lines_and_work_resumes_within_a_second() {
    let mut redis = OwnRedis::start();
    let ns = TestNs::on(&redis.url()).await;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "2"]);
    ns.registered_identity().await;
    redis.stop();
    // Long enough for every part (fetch, heartbeat, scheduler, recovery) to fail.
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.launch();
    let out = std::env::temp_dir().join(format!("{}-echo.jsonl", ns.namespace));
    let job = json!({"class": "Echo", "args": [out.to_string_lossy(), "after"], "jid": "after"});
    redis.cli(&["LPUSH", &ns.keys().queue("default"), &job.to_string()]);
    // From the moment the job is in Redis, which answers again.
    let back = std::time::Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the job after the outage",
        || async { std::fs::read_to_string(&out).is_ok_and(|text| text.contains("after")) },
    )
    .await;
    let resumed = back.elapsed();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    let log = server.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one line when it starts: {log}");
    assert!(errors[0].contains("Redis unavailable since"), "{log}");
    assert!(
        !errors[0].contains("apt-get"),
        "no install hints for a Redis that was up: {log}"
    );
    assert_eq!(log.matches("Redis is back after").count(), 1, "{log}");
    eprintln!("work resumed {resumed:?} after Redis answered again");
    assert!(
        resumed < Duration::from_millis(1500),
        "resumed after {resumed:?}"
    );
    let _ = std::fs::remove_file(&out);
}
