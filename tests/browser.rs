//! The dashboard in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (chromiumoxide). Every page loads without console errors or exceptions,
//! clicking "Retry now" on a dead job puts it back on its queue, the live figures and chart
//! update, and injected markup never runs. Screenshots of every page go to
//! `target/tmp/screenshots/` for people to look at.
//!
//! Skipped with a message when Chromium is not installed, unless
//! `PSYCHIQ_REQUIRE_BROWSER=1` (as `.ci/run` sets).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::log::{
    EnableParams as LogEnable, EventEntryAdded, LogEntryLevel,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use common::*;
use futures::StreamExt;
use psychiq::Job;
use psychiq::api::{Api, SetKind};
use psychiq::web::{WebConfig, router};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium_available() -> bool {
    let ok = Path::new(CHROMIUM).exists();
    if !ok {
        assert!(
            std::env::var("PSYCHIQ_REQUIRE_BROWSER").is_err(),
            "Chromium is required here: apt-get install chromium"
        );
        eprintln!("skipped: Chromium not installed (apt-get install chromium)");
    }
    ok
}

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Console errors, exceptions and error log entries (CSP violations, failed loads) of a page.
async fn collect_errors(page: &Page) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    page.execute(LogEnable::default()).await.unwrap();
    let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
    let mut console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .unwrap();
    let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
    let sink = Arc::clone(&errors);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                Some(e) = exceptions.next() => format!("exception: {}", e.exception_details.text),
                Some(c) = console.next() => {
                    if c.r#type != ConsoleApiCalledType::Error { continue; }
                    format!("console.error: {:?}", c.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>())
                }
                Some(l) = log.next() => {
                    if l.entry.level != LogEntryLevel::Error { continue; }
                    format!("log error: {} {:?}", l.entry.text, l.entry.url)
                }
                else => break,
            };
            sink.lock().unwrap().push(line);
        }
    });
    errors
}

/// Evaluates `js`, trying again for a while if the page is between two documents.
async fn eval<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> T {
    let mut attempts = 0;
    loop {
        match page.evaluate(js).await {
            Ok(value) => return value.into_value::<T>().unwrap(),
            Err(e) if attempts < 50 => {
                attempts += 1;
                eprintln!("evaluating again after: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("evaluating {js}: {e}"),
        }
    }
}

/// Polls `js` until it is true. An evaluation that fails because the page is between two
/// documents (a form's POST and its redirect: "Cannot find context with specified id") counts
/// as "not yet", so the wait does not depend on which side of the redirect it lands.
async fn wait_for(page: &Page, what: &str, js: &str) {
    let mut last_error = None;
    for _ in 0..250 {
        match page.evaluate(js).await {
            Ok(value) => {
                if value.into_value::<bool>().unwrap() {
                    return;
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what} ({js}); last error: {last_error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() -> psychiq::Result<()> {
    if !chromium_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();

    // Data for every page: a running server with work, a retry, a dead job, a scheduled one,
    // and hostile text that must never run.
    let record = Record::default();
    let config = ns.config().concurrency(3).tag("browser");
    let server = RunningServer::start(config, registry_with(&record));
    let xss = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"#;
    ns.client.push(Job::new("Nap", (30_000,))?).await?;
    ns.client.push(Job::new("Flaky", (xss,))?).await?;
    // A dead job from queue "parked", which nothing serves, so a retried one stays there.
    let dead_jid = "deadbeefdeadbeefdeadbeef";
    let dead = json!({"retry": 0, "queue": "parked", "class": "Flaky", "args": ["to retry"],
        "jid": dead_jid, "created_at": 1795714853.5, "enqueued_at": 1795714853.5,
        "error_class": "PaymentDeclined", "error_message": "declined", "failed_at": 1795714854.5,
        "retry_count": 0});
    let () = ns
        .query(
            redis::cmd("ZADD")
                .arg(ns.keys().dead())
                .arg(1_795_714_854.5)
                .arg(dead.to_string()),
        )
        .await;
    ns.client
        .push(Job::new(format!("Evil{xss}"), (xss,))?.delay(Duration::from_secs(3_600)))
        .await?;
    ns.client
        .push(Job::new("Record", (xss,))?.queue(format!("q{xss}")))
        .await?;
    // The README's ETL workflow, run by the demo workers on a queue of its own.
    let pages = [
        "https://example.com/alpha",
        "https://example.com/beta",
        "https://example.com/gamma",
    ];
    let report = std::env::temp_dir().join(format!("{}-etl.jsonl", ns.namespace));
    let etl = psychiq::demo::etl::etl_workflow(&pages, report.to_str().unwrap(), "etl")?
        .push(&ns.client)
        .await?;
    let etl_server = RunningServer::start(ns.config().queue("etl"), psychiq::demo::registry());
    wait_until(
        Duration::from_secs(12),
        "a retry and a running job",
        || async {
            let stats = api.stats().await.unwrap();
            let etl = api.workflow(&etl).await.unwrap().unwrap();
            // The Nap running in the tagged server (the ETL's server may be busy too).
            let napping = api
                .processes()
                .await
                .unwrap()
                .iter()
                .any(|p| p.info["tag"] == "browser" && p.busy == 1);
            stats.retries == 1 && napping && etl.state == "succeeded"
        },
    )
    .await;

    // The dashboard on a free loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(api.clone(), WebConfig::default());
    let web = tokio::spawn(async move { axum::serve(listener, app).await });

    let profile = std::env::temp_dir().join(format!("{}-chromium", ns.namespace));
    let (mut browser, mut handler) = Browser::launch(
        BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .user_data_dir(&profile)
            .window_size(1400, 1000)
            .viewport(chromiumoxide::handler::viewport::Viewport {
                width: 1400,
                height: 1000,
                ..Default::default()
            })
            .request_timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    )
    .await
    .expect("chromium starts");
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    let errors = collect_errors(&page).await;
    // The collector itself works: a console error and an exception are caught.
    let _ = page
        .evaluate("console.error('probe'); setTimeout(() => { throw new Error('probe') })")
        .await;
    wait_until(Duration::from_secs(5), "the probes", || async {
        errors.lock().unwrap().len() == 2
    })
    .await;
    errors.lock().unwrap().clear();
    let shots = screenshot_dir();

    let queue = format!("q{xss}");
    let pages = [
        ("dashboard", "/".to_string()),
        ("busy", "/busy".into()),
        ("queues", "/queues".into()),
        ("queue", format!("/queues/{}", urlencode(&queue))),
        ("retries", "/retries".into()),
        ("scheduled", "/scheduled".into()),
        ("dead", "/dead".into()),
        ("dead-job", format!("/dead/{dead_jid}")),
        ("classes", "/classes".into()),
        ("periodic", "/periodic".into()),
        ("limits", "/limits".into()),
        ("batches", "/batches".into()),
        ("iterations", "/iterations".into()),
        ("workflow", format!("/workflows/{etl}")),
    ];
    for (name, path) in &pages {
        page.goto(format!("{base}{path}")).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        // Let the script run its first poll.
        wait_for(
            &page,
            "the live figures",
            "document.querySelector('[data-stat=processed]').textContent !== '…'",
        )
        .await;
        let title: String = eval(&page, "document.title").await;
        assert!(title.ends_with("· Psychiq"), "{path}: title {title:?}");
        assert!(
            eval::<bool>(&page, "window.__xss === undefined").await,
            "injected script ran on {path}"
        );
        let file = shots.join(format!("{name}.png"));
        page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &file)
            .await
            .unwrap();
        let seen = errors.lock().unwrap().clone();
        assert!(seen.is_empty(), "{path}: {seen:#?}");
    }
    eprintln!("screenshots in {}", shots.display());

    // The workflow's graph: a box per step, each succeeded, joined by its edges.
    page.goto(format!("{base}/workflows/{etl}")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    let boxes: u32 = eval(
        &page,
        "document.querySelectorAll('svg.workflow rect').length",
    )
    .await;
    let edges: u32 = eval(
        &page,
        "document.querySelectorAll('svg.workflow line').length",
    )
    .await;
    let succeeded: u32 = eval(
        &page,
        "[...document.querySelectorAll('svg.workflow text')].filter(t => t.textContent === 'succeeded').length",
    )
    .await;
    // fetch → parse three times, parse → merge three times, merge → notify.
    assert_eq!((boxes, edges, succeeded), (8, 7, 8));

    // The running job is on the Busy page; the hostile text is on the pages, as text.
    page.goto(format!("{base}/busy")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    let running: String = eval(
        &page,
        "[...document.querySelectorAll('table')].map(t => t.textContent).join(' ')",
    )
    .await;
    assert!(
        running.contains("Nap") && running.contains("30000"),
        "{running}"
    );
    page.goto(format!("{base}/retries")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    let shown: String = eval(&page, "document.querySelector('td.error').textContent").await;
    assert!(shown.contains("<script>window.__xss=1</script>"), "{shown}");

    // "Select all" ticks every job's box on a set page.
    page.goto(format!("{base}/retries")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    page.find_element("#select-all")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let ticked: bool = eval(
        &page,
        "(() => { const boxes = [...document.querySelectorAll('#selection input[name=key]')]; \
         return boxes.length > 0 && boxes.every(b => b.checked); })()",
    )
    .await;
    assert!(ticked, "select-all ticks every box");

    // Clicking "Retry now" on the dead job's page moves it to its queue.
    page.goto(format!("{base}/dead/{dead_jid}")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    page.find_element("button[value=retry]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.wait_for_navigation().await.unwrap();
    wait_for(&page, "the notice", "!!document.querySelector('.notice')").await;
    assert_eq!(api.set_size(SetKind::Dead).await?, 0);
    let parked = api.queue_jobs("parked", 0, 10).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].jid(), dead_jid);

    // Live: the chart gains points and the processed figure follows new work without a reload.
    page.goto(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    wait_for(
        &page,
        "two chart points",
        "Number(document.getElementById('live').dataset.points || 0) >= 2",
    )
    .await;
    let before: String = eval(
        &page,
        "document.querySelector('.card [data-stat=processed]').textContent",
    )
    .await;
    for n in 0..20 {
        ns.client.push(Job::new("Record", (n,))?).await?;
    }
    wait_for(
        &page,
        "the processed figure to change",
        &format!(
            "document.querySelector('.card [data-stat=processed]').textContent !== {}",
            json!(before)
        ),
    )
    .await;
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        shots.join("dashboard-live.png"),
    )
    .await
    .unwrap();
    let seen = errors.lock().unwrap().clone();
    assert!(seen.is_empty(), "{seen:#?}");

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    driver.abort();
    web.abort();
    server.stop().await;
    etl_server.stop().await;
    let _ = std::fs::remove_file(report);
    let _ = std::fs::remove_dir_all(profile);
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
