//! The dashboard over HTTP, in process (`tower::ServiceExt::oneshot` on the router): every
//! page escapes hostile job data, state changes need a same-origin POST with the token,
//! authentication, mounting under a prefix, bounded URLs and `/metrics`.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::web::{WebConfig, router};
use serde_json::json;
use tower::ServiceExt;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = r#""><img src=x onerror=alert(1)>"#;

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Page {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 10 << 20)
        .await
        .unwrap();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, path: &str) -> Page {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post(
    app: &Router,
    path: &str,
    form: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Page {
    let mut request = Request::post(path)
        .header(header::HOST, "127.0.0.1:7433")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    send(app, request.body(Body::from(form.to_string())).unwrap()).await
}

/// The token cookie a page set, as `name=value`.
fn cookie_of(page: &Page) -> String {
    let set = page.headers[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn token_of(page: &Page) -> String {
    let at = page
        .body
        .find(r#"name="_csrf" value=""#)
        .expect("a form with a token")
        + 20;
    page.body[at..at + 32].to_string()
}

async fn app(ns: &TestNs, config: WebConfig) -> (Router, Api) {
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    (router(api.clone(), config), api)
}

/// A job in every place the dashboard shows, each carrying hostile text.
async fn seed_hostile(ns: &TestNs) {
    let keys = ns.keys();
    let hostile_queue = format!("q{IMG}");
    let job = |extra: serde_json::Value| {
        let mut job = json!({
            "retry": true, "queue": hostile_queue, "class": format!("Evil{SCRIPT}"),
            "args": [SCRIPT, IMG, {"k": SCRIPT}], "jid": "0123456789abcdef01234567",
            "created_at": 1795714853.5, "enqueued_at": 1795714853.5,
            "error_class": format!("Err{IMG}"), "error_message": format!("msg {SCRIPT}"),
            "failed_at": 1795714854.5, "retry_count": 1, "wrapped": format!("W{SCRIPT}"), "tags": [IMG]
        });
        job.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        job.to_string()
    };
    let mut pipe = redis::pipe();
    pipe.sadd(keys.queues(), &hostile_queue)
        .lpush(keys.queue(&hostile_queue), job(json!({})))
        .zadd(keys.retry(), job(json!({})), 1_795_714_900.0)
        .zadd(keys.dead(), job(json!({})), 1_795_714_900.0)
        .zadd(keys.schedule(), job(json!({})), 1_995_714_900.0)
        .sadd(keys.key("processes"), format!("host{SCRIPT}:1:abc"))
        .hset_multiple(
            keys.key(&format!("host{SCRIPT}:1:abc")),
            &[
                ("info", json!({"hostname": IMG, "tag": SCRIPT, "queues": [IMG], "concurrency": 5, "started_at": 1795714853.5}).to_string()),
                ("busy", "1".into()),
                ("beat", "1795714853.5".into()),
                ("quiet", "false".into()),
                ("rss", "1024".into()),
            ],
        )
        .hset(
            keys.key(&format!("host{SCRIPT}:1:abc:work")),
            IMG,
            json!({"queue": IMG, "payload": job(json!({})), "run_at": 1795714853}).to_string(),
        )
        .sadd(keys.key("metrics:classes"), format!("Evil{SCRIPT}"))
        .hset(keys.class_metrics(&format!("Evil{SCRIPT}")), "count", 1);
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
}

#[tokio::test]
async fn every_page_escapes_hostile_job_data() {
    let ns = TestNs::new().await;
    seed_hostile(&ns).await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    let queue = format!("q{IMG}");
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let jid = "0123456789abcdef01234567";
    let paths = [
        "/".to_string(),
        "/busy".into(),
        "/queues".into(),
        format!("/queues/{}", enc(&queue)),
        format!("/queues/{}/{jid}", enc(&queue)),
        "/retries".into(),
        format!("/retries/{jid}"),
        "/scheduled".into(),
        format!("/scheduled/{jid}"),
        "/dead".into(),
        format!("/dead/{jid}"),
        format!("/retries?q={}", enc(SCRIPT)),
        format!("/retries?notice={}", enc(SCRIPT)),
        "/classes".into(),
    ];
    for path in &paths {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}");
        for raw in [SCRIPT, "<img src=x onerror=alert(1)>"] {
            assert!(
                !page.body.contains(raw),
                "GET {path} prints {raw} unescaped"
            );
        }
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    }
    // The hostile text is shown, escaped, where it belongs.
    let retries = get(&app, "/retries").await.body;
    assert!(
        retries.contains("Err&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{retries}"
    );
    assert!(get(&app, "/busy").await.body.contains("host&lt;script&gt;"));
    let metrics = get(&app, "/metrics").await.body;
    assert!(
        metrics.contains(r#"psychiq_queue_size{queue="q\"><img src=x onerror=alert(1)>"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn state_changes_need_a_same_origin_post_with_the_token() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    for n in 0..3 {
        let () = ns
            .query(redis::cmd("ZADD").arg(ns.keys().dead()).arg(1_795_714_900.0 + n as f64).arg(
                json!({"retry": true, "queue": "default", "class": "Echo", "args": [n], "jid": format!("{n:024}"), "created_at": 1795714853.5, "error_class": "E", "error_message": "m", "retry_count": 0}).to_string(),
            ))
            .await;
    }
    let page = get(&app, "/dead").await;
    let cookie = cookie_of(&page);
    let token = token_of(&page);
    assert!(
        page.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("SameSite=Strict; HttpOnly")
            || page.headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("HttpOnly; SameSite=Strict")
    );
    let form = |t: &str| format!("_csrf={t}&action=retry&jid={:024}&jid={:024}", 0, 1);

    // GET never changes anything.
    assert_eq!(
        get(&app, &format!("/dead?{}", form(&token))).await.status,
        StatusCode::OK
    );
    // No token, a wrong token, no cookie, another origin: refused, nothing moved.
    for (form, cookie, origin) in [
        (
            format!("action=retry&jid={:024}", 0),
            Some(cookie.as_str()),
            None,
        ),
        (form(&"0".repeat(32)), Some(cookie.as_str()), None),
        (form(&token), None, None),
        (
            form(&token),
            Some(cookie.as_str()),
            Some("http://evil.example"),
        ),
    ] {
        let refused = post(&app, "/dead", &form, cookie, origin).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{form} {cookie:?} {origin:?}"
        );
        assert_eq!(api.set_size(SetKind::Dead).await.unwrap(), 3);
    }
    // The dashboard's own form: two selected jobs go back to their queue.
    let done = post(
        &app,
        "/dead",
        &form(&token),
        Some(&cookie),
        Some("http://127.0.0.1:7433"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let location = done.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/dead?notice="), "{location}");
    assert!(get(&app, location).await.body.contains("2 jobs put back"));
    assert_eq!(api.set_size(SetKind::Dead).await.unwrap(), 1);
    assert_eq!(api.queue_size("default").await.unwrap(), 2);
    // Delete one from its queue, then kill... and delete all.
    let form = format!("_csrf={token}&action=delete&jid={:024}", 0);
    assert_eq!(
        post(&app, "/queues/default", &form, Some(&cookie), None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(api.queue_size("default").await.unwrap(), 1);
    let form = format!("_csrf={token}&action=delete_all");
    assert_eq!(
        post(&app, "/dead", &form, Some(&cookie), None).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(api.set_size(SetKind::Dead).await.unwrap(), 0);
    let form = format!("_csrf={token}&action=explode");
    assert_eq!(
        post(&app, "/dead", &form, Some(&cookie), None).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn authentication_when_configured() {
    let ns = TestNs::new().await;
    let config = WebConfig::default()
        .basic_auth("ops", "s3cret")
        .token("scrape-me");
    let (app, _) = app(&ns, config).await;
    // With authentication on, any Host may be used (a rebound page cannot authenticate).
    let elsewhere = Request::get("/metrics")
        .header(header::HOST, "jobs.example.com")
        .header(header::AUTHORIZATION, "Bearer scrape-me")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, elsewhere).await.status, StatusCode::OK);
    let with = |value: &str| {
        Request::get("/metrics")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    let open = get(&app, "/").await;
    assert_eq!(open.status, StatusCode::UNAUTHORIZED);
    assert!(
        open.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        send(&app, with("Basic b3BzOndyb25n")).await.status,
        StatusCode::UNAUTHORIZED
    ); // ops:wrong
    assert_eq!(
        send(&app, with("Bearer nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with("Basic b3BzOnMzY3JldA==")).await.status,
        StatusCode::OK
    ); // ops:s3cret
    assert_eq!(
        send(&app, with("Bearer scrape-me")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn without_authentication_only_loopback_or_allowed_hosts_are_served() {
    let ns = TestNs::new().await;
    let config = WebConfig::default().allow_host("jobs.internal");
    let (app, _) = app(&ns, config).await;
    let at = |host: &str| {
        Request::get("/retries")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    // A page on another name re-pointed at 127.0.0.1 (DNS rebinding) sends its own Host.
    let rebound = send(&app, at("attacker.example:7433")).await;
    assert_eq!(rebound.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(
        rebound.body.contains("--allowed-host attacker.example"),
        "{}",
        rebound.body
    );
    for host in [
        "127.0.0.1:7433",
        "localhost:7433",
        "[::1]:7433",
        "jobs.internal",
    ] {
        assert_eq!(send(&app, at(host)).await.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn mounted_under_a_prefix_every_link_stays_inside_it() {
    let ns = TestNs::new().await;
    let (inner, _) = app(&ns, WebConfig::default()).await;
    let app = Router::new().nest("/admin/jobs", inner);
    let page = get(&app, "/admin/jobs/retries").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"src="/admin/jobs/assets/app.js""#));
    assert!(page.body.contains(r#"href="/admin/jobs/queues""#));
    assert!(page.body.contains(r#"action="/admin/jobs/retries""#));
    assert!(
        page.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Path=/admin/jobs")
    );
    assert_eq!(
        get(&app, "/admin/jobs/assets/app.js").await.status,
        StatusCode::OK
    );
    assert_eq!(get(&app, "/retries").await.status, StatusCode::NOT_FOUND);
    // The root of the mount is the dashboard, and its links stay inside too.
    let home = get(&app, "/admin/jobs").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body.contains(r#"href="/admin/jobs/busy""#),
        "{}",
        home.body
    );
    assert!(home.body.contains(r#"href="/admin/jobs?days=7""#));
    assert!(
        home.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Path=/admin/jobs")
    );
}

#[tokio::test]
async fn numbers_and_text_from_the_url_are_bounded() {
    let ns = TestNs::new().await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    for path in [
        "/retries?page=99999999999999999999",
        "/retries?page=-1",
        "/dead?page=abc",
        "/queues/default?page=18446744073709551615",
    ] {
        assert_eq!(get(&app, path).await.status, StatusCode::OK, "{path}");
    }
    let long = "x".repeat(20_000);
    let page = get(&app, &format!("/retries?q={long}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains(&"x".repeat(201)),
        "search text is cut at 200"
    );
    let history = get(&app, "/api/history?days=100000").await;
    let days: serde_json::Value = serde_json::from_str(&history.body).unwrap();
    assert_eq!(days.as_array().unwrap().len(), 180);
    assert_eq!(
        get(&app, "/nope/nope/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/bogus-set").await.status, StatusCode::NOT_FOUND);
    // A score in milliseconds where seconds belong (a buggy client) is shown, not a crash.
    let () = ns
        .query(redis::cmd("ZADD").arg(ns.keys().schedule()).arg(1.7e12).arg(
            r#"{"class":"X","args":[],"jid":"abcabcabcabcabcabcabcabc","queue":"default","created_at":1.7e12}"#,
        ))
        .await;
    let scheduled = get(&app, "/scheduled").await;
    assert_eq!(scheduled.status, StatusCode::OK);
    assert!(scheduled.body.contains("1700000000000"));
    let job = get(&app, "/scheduled/1700000000000-abcabcabcabcabcabcabcabc").await;
    assert_eq!(job.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_report_totals_queues_and_per_class_durations() {
    let ns = TestNs::new().await;
    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    for n in 0..5 {
        ns.client
            .push(psychiq::Job::new("Record", (n,)).unwrap())
            .await
            .unwrap();
    }
    ns.client
        .push(psychiq::Job::new("Flaky", (1,)).unwrap())
        .await
        .unwrap();
    ns.client
        .push(psychiq::Job::new("Record", (9,)).unwrap().queue("idle"))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "six runs", || async {
        record.count() == 5
    })
    .await;
    server.stop().await; // flushes the counters
    let (app, api) = app(&ns, WebConfig::default()).await;
    let text = get(&app, "/metrics").await.body;
    for line in [
        "psychiq_processed_total 6",
        "psychiq_failed_total 1",
        "psychiq_retries 1",
        "psychiq_queue_size{queue=\"idle\"} 1",
        "psychiq_job_duration_seconds_count{class=\"Record\"} 5",
        "psychiq_job_duration_seconds_bucket{class=\"Record\",le=\"+Inf\"} 5",
        "psychiq_job_failures_total{class=\"Flaky\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let classes = api.class_metrics().await.unwrap();
    assert_eq!(classes[0].class, "Record");
    assert!(classes[0].mean() < 1.0 && classes[0].p95() <= 1.0);
    let page = get(&app, "/classes").await.body;
    assert!(page.contains("Record") && page.contains("Flaky"));
    // Over time: this hour's per-minute metrics, as Sidekiq 7/8's Metrics tab reads them.
    let now = std::time::SystemTime::now();
    let series = api
        .class_series(Duration::from_secs(3600), now)
        .await
        .unwrap();
    assert_eq!((series.starts.len(), series.step_secs), (60, 60));
    let record = series.classes.iter().find(|c| c.class == "Record").unwrap();
    assert_eq!(record.runs.iter().sum::<u64>(), 5);
    let flaky = series.classes.iter().find(|c| c.class == "Flaky").unwrap();
    assert_eq!(flaky.failed.iter().sum::<u64>(), 1);
    let day = api
        .class_series(Duration::from_secs(24 * 3600), now)
        .await
        .unwrap();
    assert_eq!((day.starts.len(), day.step_secs), (144, 600));
    let ten_minutes: u64 = day
        .classes
        .iter()
        .find(|c| c.class == "Record")
        .unwrap()
        .runs
        .iter()
        .sum();
    assert_eq!(ten_minutes, 5);
    for range in ["1h", "72h"] {
        let page = get(&app, &format!("/classes?range={range}")).await.body;
        assert!(page.contains("Record · 5 runs, 0 failed"), "{page}");
        assert!(page.contains("runs and failures over time"), "{page}");
    }
}

#[tokio::test]
async fn quiet_and_stop_buttons_signal_the_process() {
    let ns = TestNs::new().await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    let server = RunningServer::start(ns.config(), registry_with(&Record::default()));
    let identity = ns.registered_identity().await;
    let page = get(&app, "/busy").await;
    assert!(page.body.contains(&identity));
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let form = |action: &str| {
        format!(
            "_csrf={token}&identity={}&action={action}",
            identity.replace(':', "%3A")
        )
    };
    let quiet = post(&app, "/busy", &form("quiet"), Some(&cookie), None).await;
    assert_eq!(quiet.status, StatusCode::SEE_OTHER);
    wait_until(Duration::from_secs(8), "the server to be quiet", || async {
        get(&app, "/busy").await.body.contains("badge quiet")
    })
    .await;
    let missing = post(
        &app,
        "/busy",
        &format!("_csrf={token}&action=stop"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    // Only live processes: a made-up identity would otherwise write an arbitrary key.
    let bogus_form = format!("_csrf={token}&action=stop&identity=queue%3Adefault");
    let bogus = post(&app, "/busy", &bogus_form, Some(&cookie), None).await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    let signals = ns.keys().key("queue:default-signals");
    let exists: bool = ns.query(redis::cmd("EXISTS").arg(&signals)).await;
    assert!(!exists);
    assert_eq!(
        post(&app, "/busy", &form("stop"), Some(&cookie), None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    server.wait(Duration::from_secs(15)).await;
}

/// Names and payloads that are not UTF-8 and carry ESC, BEL and CR: every page renders,
/// `/metrics` stays parseable, and the odd queue can be opened and cleared by its link.
#[tokio::test]
async fn bytes_that_are_not_utf8_are_shown_escaped_everywhere() {
    let ns = TestNs::new().await;
    let prefix = ns.keys().key("").into_bytes();
    let key = |name: &[u8]| [prefix.clone(), name.to_vec()].concat();
    let now = psychiq::__private::now_secs();
    let mut pipe = redis::pipe();
    pipe.sadd(key(b"queues"), &b"q\xff\r\x1b"[..])
        .lpush(
            key(b"queue:q\xff\r\x1b"),
            &b"{\"class\":\"A\",\"args\":[\"\xfe\"],\"jid\":\"j1\"}"[..],
        )
        .zadd(key(b"dead"), &b"not json \xff"[..], now)
        .zadd(
            key(b"retry"),
            &b"{\"class\":\"B\xff\",\"args\":[],\"jid\":\"j2\"}"[..],
            now,
        )
        .sadd(key(b"processes"), &b"h\xff:1:abc"[..])
        .hset_multiple(
            key(b"h\xff:1:abc"),
            &[
                ("info", "{\"hostname\":\"h\"}"),
                ("busy", "0"),
                ("beat", "1"),
            ],
        )
        .sadd(key(b"metrics:classes"), &b"C\xff\r"[..])
        .hset(key(b"metrics:class:C\xff\r"), "count", 2);
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let (app, api) = app(&ns, WebConfig::default()).await;
    for path in [
        "/",
        "/busy",
        "/queues",
        "/retries",
        "/dead",
        "/classes",
        "/api/stats",
    ] {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(!page.body.contains('\u{1b}'), "{path}");
    }
    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(!metrics.body.contains('\r') && !metrics.body.contains('\u{1b}'));
    assert!(
        metrics.body.contains(r#"queue="q\\xff\\x0d\\x1b""#),
        "{}",
        metrics.body
    );

    // The queue's link, as the Queues page writes it, opens it and clears it.
    let queues = get(&app, "/queues").await.body;
    let link = "/queues/q%5Cxff%5Cx0d%5Cx1b";
    assert!(queues.contains(link), "{queues}");
    let page = get(&app, link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("j1"));
    let form = format!("_csrf={}&action=clear", token_of(&page));
    let cleared = post(&app, link, &form, Some(&cookie_of(&page)), None).await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    assert!(api.queues().await.unwrap().is_empty());
}

/// Jobs scored below zero or at infinity (written by hand or by a buggy client) open and
/// can be acted on.
#[tokio::test]
async fn jobs_with_negative_or_infinite_scores_can_be_acted_on() {
    let ns = TestNs::new().await;
    let job =
        |jid: &str| json!({"class": "X", "args": [], "jid": jid, "queue": "default"}).to_string();
    let mut pipe = redis::pipe();
    pipe.zadd(ns.keys().dead(), job("neg"), -5.5)
        .cmd("ZADD")
        .arg(ns.keys().dead())
        .arg("+inf")
        .arg(job("inf"));
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let (app, api) = app(&ns, WebConfig::default()).await;
    let list = get(&app, "/dead").await;
    assert!(
        list.body.contains("-5.5-neg") && list.body.contains("inf-inf"),
        "{}",
        list.body
    );
    assert_eq!(get(&app, "/dead/-5.5-neg").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/dead/inf-inf").await.status, StatusCode::OK);
    let form = format!(
        "_csrf={}&action=delete&key=-5.5-neg&key=inf-inf",
        token_of(&list)
    );
    let done = post(&app, "/dead", &form, Some(&cookie_of(&list)), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(api.set_size(SetKind::Dead).await.unwrap(), 0);

    // The notice is named by an id the server gave: it shows once, and a link's own text never.
    let location = done.headers[header::LOCATION].to_str().unwrap().to_string();
    let notice = get(&app, &location).await;
    assert!(notice.body.contains("2 jobs deleted."), "{}", notice.body);
    assert!(!get(&app, &location).await.body.contains("2 jobs deleted."));
    let forged = get(&app, "/dead?notice=Your+session+expired%2C+call+555-0100").await;
    assert!(!forged.body.contains("session expired"));
}

/// A page of another site cannot make the dashboard work for it (an `<img>` pointing at a
/// job page scans the set); following a link to it still works.
#[tokio::test]
async fn requests_embedded_in_other_sites_are_refused() {
    let ns = TestNs::new().await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    let fetch = |site: &'static str, mode: &'static str| {
        Request::get("/dead/x")
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", mode)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&app, fetch("cross-site", "no-cors")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, fetch("same-site", "cors")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, fetch("cross-site", "navigate")).await.status,
        StatusCode::NOT_FOUND
    );
    let framed = Request::get("/dead/x")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "iframe")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, framed).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, fetch("same-origin", "cors")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn auth_schemes_are_case_insensitive_and_the_cookie_can_be_secure() {
    let ns = TestNs::new().await;
    let config = WebConfig::default()
        .basic_auth("ops", "s3cret")
        .secure_cookie(true);
    let (app, _) = app(&ns, config).await;
    let encoded = "b3BzOnMzY3JldA=="; // ops:s3cret
    for scheme in ["Basic", "basic", "BASIC"] {
        let page = send(
            &app,
            Request::get("/")
                .header(header::AUTHORIZATION, format!("{scheme} {encoded}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{scheme}");
        let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.ends_with("; Secure"), "{cookie}");
    }
}

#[tokio::test]
async fn queues_are_paused_and_resumed_from_the_dashboard() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    ns.client
        .push(psychiq::Job::new("Record", ("x",)).unwrap())
        .await
        .unwrap();
    let page = get(&app, "/queues").await;
    assert!(page.body.contains(r#"value="pause""#), "a Pause button");
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let pause = format!("_csrf={token}&action=pause");
    let done = post(&app, "/queues/default", &pause, Some(&cookie), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        api.paused_queues().await.unwrap(),
        vec!["default".to_string()]
    );
    let page = get(&app, "/queues/default").await;
    assert!(page.body.contains("badge quiet") && page.body.contains("paused"));
    assert!(page.body.contains(r#"value="unpause""#), "a Resume button");
    let metrics = get(&app, "/metrics").await.body;
    assert!(
        metrics.contains(r#"psychiq_queue_paused{queue="default"} 1"#),
        "{metrics}"
    );
    let resume = format!("_csrf={token}&action=unpause");
    let done = post(&app, "/queues/default", &resume, Some(&cookie), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(api.paused_queues().await.unwrap().is_empty());
    assert!(get(&app, "/queues").await.body.contains(r#"value="pause""#));
}

#[tokio::test]
async fn periodic_entries_are_shown_run_paused_and_resumed_from_the_dashboard() {
    use psychiq::periodic::{PeriodicJob, Schedule};
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    // A hostile name, shown as text and sent back intact in the form's URL.
    let name = format!("nightly {SCRIPT}");
    let mut registry = registry_with(&Record::default());
    registry.periodic(
        PeriodicJob::new(
            name.as_str(),
            Schedule::cron("0 3 29 2 *")
                .unwrap()
                .in_zone("Europe/Berlin")
                .unwrap(),
            psychiq::Job::new("Reports::Nightly", (1,))
                .unwrap()
                .queue("reports"),
        )
        .unwrap(),
    );
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(5), "the entry declared", || async {
        !api.periodic_jobs().await.unwrap().is_empty()
    })
    .await;
    let page = get(&app, "/periodic").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(SCRIPT), "escaped");
    for shown in [
        "0 3 29 2 *",
        "Europe/Berlin",
        "Reports::Nightly",
        "ticking",
        "03:00:00 CE",
    ] {
        assert!(page.body.contains(shown), "{shown} on the page");
    }
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let path = format!(
        "/periodic/{}",
        name.replace('<', "%3C")
            .replace('>', "%3E")
            .replace(' ', "%20")
            .replace('/', "%2F")
    );
    let run = format!("_csrf={token}&action=run");
    let done = post(&app, &path, &run, Some(&cookie), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(api.queue_jobs("reports", 0, 10).await.unwrap().len(), 1);
    let pause = format!("_csrf={token}&action=pause");
    post(&app, &path, &pause, Some(&cookie), None).await;
    assert!(api.periodic_jobs().await.unwrap()[0].paused);
    assert!(
        get(&app, "/periodic")
            .await
            .body
            .contains(r#"value="resume""#)
    );
    let resume = format!("_csrf={token}&action=resume");
    post(&app, &path, &resume, Some(&cookie), None).await;
    assert!(!api.periodic_jobs().await.unwrap()[0].paused);
    // An unknown entry is a 404 that says how to list the known ones.
    let missing = post(&app, "/periodic/weekly", &pause, Some(&cookie), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("psychiq periodic list"));
    server.stop().await;
}

#[tokio::test]
async fn rate_limiters_are_shown_with_their_use() {
    use psychiq::limits::{Acquired, Limiter, Limits};
    let ns = TestNs::new().await;
    let (app, _api) = app(&ns, WebConfig::default()).await;
    assert!(get(&app, "/limits").await.body.contains("No rate limiter"));
    let limits = Limits::for_client(&ns.client).unwrap();
    let limiter = Limiter::concurrent(format!("stripe {SCRIPT}"), 3);
    let Acquired::Granted(permit) = limits.acquire(&limiter).await.unwrap() else {
        panic!("room");
    };
    let page = get(&app, "/limits").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(SCRIPT), "escaped");
    assert!(
        page.body.contains("concurrent") && page.body.contains("1 / 3"),
        "{}",
        page.body
    );
    permit.release().await;
}

#[tokio::test]
async fn batches_and_iterations_are_shown_and_an_iteration_cancelled() {
    use psychiq::batch::Batch;
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let bid = Batch::new(format!("import {SCRIPT}"))
        .push(
            &ns.client,
            vec![
                psychiq::Job::new("Record", ("a",)).unwrap(),
                psychiq::Job::new("Record", ("b",)).unwrap(),
            ],
        )
        .await
        .unwrap();
    let page = get(&app, "/batches").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(SCRIPT), "escaped");
    assert!(
        page.body.contains(&bid) && page.body.contains("0 / 2"),
        "{}",
        page.body
    );

    // An iteration part-way through (its cursor saved) is listed and cancelled here.
    let () = ns
        .query(
            redis::cmd("HSET")
                .arg(ns.keys().key("it:fedcba9876543210fedcba98"))
                .arg("c")
                .arg("42"),
        )
        .await;
    let () = ns
        .query(
            redis::cmd("ZADD")
                .arg(ns.keys().key("iterations"))
                .arg(1)
                .arg("fedcba9876543210fedcba98"),
        )
        .await;
    let page = get(&app, "/iterations").await;
    assert!(
        page.body.contains("fedcba9876543210fedcba98"),
        "{}",
        page.body
    );
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let cancel = format!("_csrf={token}&action=cancel&jid=fedcba9876543210fedcba98");
    let done = post(&app, "/iterations", &cancel, Some(&cookie), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(api.iterations(10).await.unwrap()[0].cancelled);
}

/// One corrupt key (another program's string where a batch's hash, a walk's state, a
/// limiter's state or a periodic entry should be) is shown as unreadable, naming its key,
/// on the page and in the CLI; it no longer turns the whole page into a 503.
#[tokio::test]
async fn a_corrupt_entry_is_shown_as_unreadable_not_a_page_wide_failure() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let k = ns.keys();
    let window = psychiq::limits::Limiter::window("w", 5, Duration::from_secs(60));
    let mut pipe = redis::pipe();
    pipe.set(k.key("batch:bad"), "x")
        .zadd(k.key("batches"), "bad", 1)
        .set(k.key("it:bad"), "x")
        .zadd(k.key("iterations"), "bad", 1)
        .hset(
            k.key("limits"),
            "w",
            serde_json::to_string(&window).unwrap(),
        )
        .hset(k.key("periodic"), "bad", "not json")
        .hset(k.key("periodic:last"), "bad", "not a number");
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    // A window limiter's state is a hash: a set is of the wrong type.
    let _: u64 = ns
        .query(redis::cmd("SADD").arg(k.key("limits:window:w")).arg("x"))
        .await;

    let batches = api.batches(10).await.unwrap();
    assert!(
        batches[0]
            .unreadable
            .as_deref()
            .unwrap()
            .contains(&k.key("batch:bad"))
    );
    let iterations = api.iterations(10).await.unwrap();
    assert!(
        iterations[0]
            .unreadable
            .as_deref()
            .unwrap()
            .contains(&k.key("it:bad"))
    );
    let limits = api.limits().await.unwrap();
    assert!(
        limits[0]
            .unreadable
            .as_deref()
            .unwrap()
            .contains("limits:window:w")
    );
    let periodic = api.periodic_jobs().await.unwrap();
    assert!(
        periodic[0]
            .unreadable
            .as_deref()
            .unwrap()
            .contains("\"bad\"")
    );
    for (path, key) in [
        ("/batches", "batch:bad"),
        ("/iterations", "it:bad"),
        ("/limits", "limits:window:w"),
        ("/periodic", "periodic"),
    ] {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains("unreadable"), "{path}");
        assert!(page.body.contains(&k.key(key)), "{path} names {key}");
    }
    for command in ["batches", "iterations", "limits", "periodic"] {
        let out = psychiq()
            .args(["--redis-url", &ns.url, "-n", &ns.namespace, command])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("unreadable"),
            "{command}"
        );
    }
    // A typo cancels nothing and leaves no mark.
    let out = psychiq()
        .args([
            "--redis-url",
            &ns.url,
            "-n",
            &ns.namespace,
            "iterations",
            "cancel",
            "NOSUCHJID",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let marked: bool = ns
        .query(redis::cmd("EXISTS").arg(k.key("it:NOSUCHJID")))
        .await;
    assert!(!marked);
}

/// Thousands of queues: the front page shows the largest 25, the Queues page a page at a
/// time, and a scrape gives series to the largest 1000 (each of these was every queue, so
/// 100,000 queues made pages and scrapes of tens of megabytes).
#[tokio::test]
async fn many_queues_are_paged_and_capped() {
    let ns = TestNs::new().await;
    let (app, _api) = app(&ns, WebConfig::default()).await;
    let mut pipe = redis::pipe();
    for n in 0..1_500 {
        let queue = format!("q{n:05}");
        pipe.sadd(ns.keys().queues(), &queue).ignore();
        for _ in 0..(n % 7) {
            pipe.lpush(
                ns.keys().queue(&queue),
                r#"{"class":"X","args":[],"jid":"j"}"#,
            )
            .ignore();
        }
    }
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    let rows = |body: &str| body.matches("href=\"/queues/q").count();
    let front = get(&app, "/").await;
    assert_eq!(rows(&front.body), 25, "the largest 25");
    assert!(front.body.contains("of 1500 queues"));
    let first = get(&app, "/queues").await;
    let second = get(&app, "/queues?page=2").await;
    assert_eq!(rows(&first.body), 25);
    assert!(first.body.contains("q00000") && !second.body.contains("q00000"));
    assert!(second.body.contains("q00025"));
    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.body.matches("psychiq_queue_size{").count(), 1_000);
    assert!(metrics.body.contains("psychiq_queues 1500"));
}

/// A unique job's page shows its lock (who holds it, when it lets go) with an Unlock
/// button; after it, the same job can be pushed again.
#[tokio::test]
async fn a_unique_jobs_lock_is_shown_and_let_go_from_its_page() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let job = || {
        psychiq::Job::new("Record", ("x",))
            .unwrap()
            .queue("idle")
            .unique_for(Duration::from_secs(600))
    };
    let jid = ns.client.push(job()).await.unwrap();
    let path = format!("/queues/idle/{jid}");
    let page = get(&app, &path).await;
    assert!(page.body.contains("Unique lock") && page.body.contains("(this job)"));
    let key = api.unique_locks(10).await.unwrap()[0].key.clone();
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    // Only back to a page of the dashboard, whatever `from` says.
    let form = format!("_csrf={token}&action=unlock&key={key}&from=https://evil.example/");
    let done = post(&app, "/unique", &form, Some(&cookie), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let location = done.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/?notice="), "{location}");
    assert!(api.unique_lock(&key).await.unwrap().is_none());
    assert!(!get(&app, &path).await.body.contains("Unique lock"));
    assert!(matches!(
        ns.client.try_push(job()).await.unwrap(),
        psychiq::Push::Pushed(_)
    ));
}

#[tokio::test]
async fn any_jid_is_found_wherever_the_job_is() {
    let ns = TestNs::new().await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    let keys = ns.keys();
    let job = |jid: &str| {
        json!({"class": "Find", "args": [1], "queue": "mail", "jid": jid, "retry": true,
               "created_at": 1795714853.5, "enqueued_at": 1795714853.5})
        .to_string()
    };
    let mut pipe = redis::pipe();
    pipe.sadd(keys.queues(), "mail")
        .lpush(keys.queue("mail"), job("aaaaaaaaaaaaaaaaaaaaaaaa"))
        .zadd(keys.schedule(), job("bbbbbbbbbbbbbbbbbbbbbbbb"), 1_995_714_900.0)
        .zadd(keys.retry(), job("cccccccccccccccccccccccc"), 1_795_714_900.0)
        .zadd(keys.dead(), job("dddddddddddddddddddddddd"), 1_795_714_901.0)
        .sadd(keys.key("processes"), "host:1:abc")
        .hset(
            keys.key("host:1:abc"),
            "info",
            json!({"hostname": "host", "queues": ["mail"], "concurrency": 5}).to_string(),
        )
        .hset(
            keys.key("host:1:abc:work"),
            "slot7",
            json!({"queue": "mail", "payload": job("eeeeeeeeeeeeeeeeeeeeeeee"), "run_at": 1795714853}).to_string(),
        )
        // Taken into the process's in-progress hash, not yet in its heartbeat's list.
        .sadd(keys.key("inprogress"), "host:1:abc")
        .hset(keys.inprogress("host:1:abc", "mail"), "12", job("abababababababababababab"));
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    for (jid, page) in [
        (
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "/queues/mail/aaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        (
            "bbbbbbbbbbbbbbbbbbbbbbbb",
            "/scheduled/1995714900-bbbbbbbbbbbbbbbbbbbbbbbb",
        ),
        (
            "cccccccccccccccccccccccc",
            "/retries/1795714900-cccccccccccccccccccccccc",
        ),
        (
            "dddddddddddddddddddddddd",
            "/dead/1795714901-dddddddddddddddddddddddd",
        ),
    ] {
        let found = get(&app, &format!("/jobs/{jid}")).await;
        assert_eq!(found.status, StatusCode::SEE_OTHER, "{jid}: {}", found.body);
        assert_eq!(found.headers["location"], page);
        let shown = get(&app, page).await;
        assert_eq!(shown.status, StatusCode::OK, "{page}");
        assert!(shown.body.contains(jid));
    }
    // A running job is shown where it runs; the Busy page links its jid here.
    let running = get(&app, "/jobs/eeeeeeeeeeeeeeeeeeeeeeee").await;
    assert_eq!(running.status, StatusCode::OK);
    assert!(
        running
            .body
            .contains("Running on <code>host:1:abc</code> (slot slot7)")
    );
    let fetched = get(&app, "/jobs/abababababababababababab").await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(
        fetched.body.contains("Taken by <code>host:1:abc</code>"),
        "{}",
        fetched.body
    );
    let busy = get(&app, "/busy").await.body;
    assert!(
        busy.contains(r#"href="/jobs/eeeeeeeeeeeeeeeeeeeeeeee""#),
        "{busy}"
    );
    // The header's search box goes to the same place; a jid found nowhere says why.
    let searched = get(&app, "/jobs?jid=+aaaaaaaaaaaaaaaaaaaaaaaa+").await;
    assert_eq!(
        searched.headers["location"],
        "/jobs/aaaaaaaaaaaaaaaaaaaaaaaa"
    );
    assert!(busy.contains(r#"action="/jobs""#));
    let nowhere = get(&app, "/jobs/ffffffffffffffffffffffff").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert!(nowhere.body.contains("leaves nothing behind"));

    // The same from the command line, with an exit status that says whether it was found.
    let run = |args: &[&str]| {
        let out = psychiq()
            .args(args)
            .args(["--redis-url", &ns.url, "-n", &ns.namespace])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, _) = run(&["job", "cccccccccccccccccccccccc"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("cccccccccccccccccccccccc: retrying (queue mail), at "),
        "{out}"
    );
    let (code, out, _) = run(&["--json", "job", "eeeeeeeeeeeeeeeeeeeeeeee"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (shown["state"].as_str(), shown["slot"].as_str()),
        (Some("running"), Some("slot7"))
    );
    let (code, out, _) = run(&["--json", "job", "cccccccccccccccccccccccc"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["job"]["jid"], "cccccccccccccccccccccccc", "{out}");
    let (code, out, _) = run(&["job", "abababababababababababab"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("abababababababababababab: fetched by host:1:abc from queue mail"),
        "{out}"
    );
    let (code, _, err) = run(&["job", "ffffffffffffffffffffffff"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("leaves nothing behind"), "{err}");
}

#[tokio::test]
async fn a_tracked_jobs_status_progress_and_cancel_button_are_on_the_dashboard() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let handle = ns
        .client
        .push_tracked(psychiq::Job::new("Report", (7,)).unwrap())
        .await
        .unwrap();
    let page = get(&app, &format!("/jobs/{}", handle.jid())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("enqueued"), "{}", page.body);
    assert!(
        page.body.contains("0 (0 runs next)"),
        "its place in the queue"
    );
    assert!(page.body.contains(">Cancel<"), "a Cancel button");
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let done = post(
        &app,
        &format!("/jobs/{}/cancel", handle.jid()),
        &format!("_csrf={token}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(api.queue_size("default").await.unwrap(), 0);
    let location = done.headers[header::LOCATION].to_str().unwrap().to_string();
    let page = get(&app, &location).await;
    assert!(page.body.contains("Cancelled"), "the notice: {}", page.body);
    assert!(page.body.contains("cancelled"));
    assert!(!page.body.contains(">Cancel<"), "nothing left to cancel");

    // A running job's progress and its Cancel button on Busy.
    let mut registry = psychiq::Registry::new();
    registry.register(Counting);
    let server = RunningServer::start(ns.config(), registry);
    let running = ns
        .client
        .push(psychiq::Job::new("Counting", ()).unwrap())
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "progress on Busy", || async {
        get(&app, "/busy").await.body.contains("3/10 three of ten")
    })
    .await;
    let page = get(&app, "/busy").await;
    assert!(page.body.contains(&format!("/jobs/{running}/cancel")));
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let done = post(
        &app,
        &format!("/jobs/{running}/cancel"),
        &format!("_csrf={token}&back=busy"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(
        done.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("/busy")
    );
    wait_until(Duration::from_secs(5), "the job cancelled", || async {
        COUNTING_STOPPED.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    server.stop().await;
}

static COUNTING_STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says it is three of ten done, then waits to be cancelled.
struct Counting;

impl psychiq::Worker for Counting {
    type Args = psychiq::NoArgs;
    async fn perform(&self, _: psychiq::NoArgs) -> psychiq::JobResult {
        psychiq::context::progress(3, 10, "three of ten");
        psychiq::context::cancelled().await;
        COUNTING_STOPPED.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_workflow_is_drawn_as_its_graph_and_cancelled_from_its_page() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let step = |name: &str| psychiq::Job::new("Step", (name,)).unwrap();
    let wid = psychiq::workflow::Workflow::new("nightly <etl>")
        .step("fetch", step("fetch"))
        .step("parse", step("parse"))
        .after(["fetch"])
        .push(&ns.client)
        .await
        .unwrap();
    let list = get(&app, "/workflows").await;
    assert!(list.body.contains(&wid), "{}", list.body);
    assert!(
        list.body.contains("nightly &lt;etl&gt;"),
        "names are escaped"
    );
    let page = get(&app, &format!("/workflows/{wid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg"), "the graph is drawn");
    assert!(page.body.contains("<line"), "with its edge");
    assert!(page.body.contains(">fetch<") && page.body.contains(">parse<"));
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let done = post(
        &app,
        &format!("/workflows/{wid}/cancel"),
        &format!("_csrf={token}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let workflow = api.workflow(&wid).await.unwrap().unwrap();
    assert_eq!(workflow.state, "cancelled");
    assert_eq!(api.queue_size("default").await.unwrap(), 0, "fetch removed");
    assert_eq!(
        get(&app, "/workflows/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn groups_are_listed_paused_resumed_and_limited_from_the_dashboard() {
    let ns = TestNs::new().await;
    let (app, api) = app(&ns, WebConfig::default()).await;
    let hostile = "tenant <b>";
    api.pause_group("default", hostile).await.unwrap();
    for n in 0..2 {
        let job = psychiq::Job::new("Record", (n,)).unwrap().group(hostile);
        ns.client.push(job).await.unwrap();
    }
    // A server routes the jobs into their (paused) group as it fetches.
    let record = Record::default();
    let server = RunningServer::start(
        ns.config().poll_interval(Duration::from_millis(100)),
        registry_with(&record),
    );
    wait_until(Duration::from_secs(5), "the group's backlog", || async {
        api.groups("default", 10)
            .await
            .unwrap()
            .iter()
            .any(|g| g.name == hostile && g.backlog == 2)
    })
    .await;
    server.stop().await;
    assert_eq!(record.count(), 0, "a paused group's job ran");
    let page = get(&app, "/groups").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("tenant &lt;b&gt;"), "{}", page.body);
    assert!(!page.body.contains("<b>"), "names are escaped");
    assert!(page.body.contains("paused") && page.body.contains(r#"value="resume""#));
    let (cookie, token) = (cookie_of(&page), token_of(&page));
    let path = "/groups/default/tenant%20%3Cb%3E";
    let done = post(
        &app,
        path,
        &format!("_csrf={token}&action=limit&limit=3"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let done = post(
        &app,
        path,
        &format!("_csrf={token}&action=resume"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let group = api.groups("default", 10).await.unwrap().remove(0);
    assert_eq!((group.limit, group.paused), (3, false));
    let refused = post(&app, path, "action=pause", Some(&cookie), None).await;
    assert_ne!(refused.status, StatusCode::SEE_OTHER, "no token, no pause");
    assert!(!api.groups("default", 10).await.unwrap()[0].paused);
}

#[tokio::test]
async fn sealed_arguments_show_as_encrypted() {
    let ns = TestNs::new().await;
    let (app, _) = app(&ns, WebConfig::default()).await;
    let mut client = ns.client.clone();
    client.encrypt_with(
        psychiq::encryption::Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .unwrap(),
    );
    let job = psychiq::Job::new("Pay", ("card-4242",)).unwrap().encrypt();
    let jid = client.push(job).await.unwrap();
    for path in [
        "/queues/default".to_string(),
        format!("/queues/default/{jid}"),
    ] {
        let page = get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains("[encrypted]"), "{path}: {}", page.body);
        assert!(!page.body.contains("card-4242"), "{path}");
    }
}
