//! The embedding example (`examples/axum_app.rs`), driven over HTTP as a user would: a
//! signup enqueues a job that the in-process server runs with the app's shared state, the
//! dashboard answers under `/jobs`, and TERM (as Ctrl-C) stops everything cleanly.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The example's binary, which `cargo test` builds next to the test binaries (built here
/// when only this test was asked for).
fn example() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // deps
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("examples").join("axum_app");
    if !binary.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--example", "axum_app"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(built.success(), "cargo build --example axum_app");
    }
    binary
}

fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test]
async fn the_embedding_example_serves_enqueues_runs_and_stops() {
    let ns = TestNs::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::env::temp_dir().join(format!("{}-app.log", ns.namespace));
    let mut app = Command::new(example())
        .args(["--bind", &format!("127.0.0.1:{port}"), "-n", &ns.namespace])
        .args(["--redis-url", &ns.url])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the example is built by cargo test");
    wait_until(Duration::from_secs(20), "the app to listen", || async {
        http(port, "GET", "/sent").0 == 200
    })
    .await;
    let (status, body) = http(port, "POST", "/signup?email=ada@example.com");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"jid\""), "{body}");
    wait_until(Duration::from_secs(10), "the worker to run", || async {
        http(port, "GET", "/sent").1.contains("\"sent\":1")
    })
    .await;
    let (status, page) = http(port, "GET", "/jobs");
    assert_eq!(status, 200);
    assert!(
        page.contains("href=\"/jobs/queues\""),
        "the dashboard links stay under /jobs"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &app.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = app.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the app did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(text.contains("welcome mail sent"), "{text}");
    assert!(text.contains("stopped cleanly"), "{text}");
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("job server: ").nth(1))
        .collect();
    assert_eq!(
        events,
        ["Startup", "Quiet", "Shutdown", "Stopped"],
        "{text}"
    );
    let processes: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(ns.keys().key("processes")))
        .await;
    assert!(processes.is_empty(), "the job server deregistered");
    let _ = std::fs::remove_file(&log);
}
