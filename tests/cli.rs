//! The real `psychiq` binary: flags and their errors, TERM/TSTP, remote control and command
//! workers. Each test spawns the binary against its own namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use psychiq::Job;
use serde_json::Value;

async fn wait_quiet(ns: &TestNs, identity: &str) {
    let key = ns.keys().key(identity);
    wait_until(Duration::from_secs(8), "quiet=true", || async {
        let quiet: Option<String> = ns.query(redis::cmd("HGET").arg(&key).arg("quiet")).await;
        quiet.as_deref() == Some("true")
    })
    .await;
}

#[test]
fn help_version_and_flag_errors() {
    let out = psychiq().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--db",
        "--queue",
        "--concurrency",
        "--system",
        "--namespace",
        "--redis-url",
        "--shutdown-timeout",
        "--tag",
        "--verbose",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
    let out = psychiq().arg("-V").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("psychiq {}", env!("CARGO_PKG_VERSION"))
    );

    for (args, says) in [
        (vec!["-c", "abc"], "invalid value 'abc'"),
        (vec!["-c", "0"], "--concurrency"),
        (vec!["-q", "q,x"], "whole number"),
        (vec!["-p", "99999"], "99999"),
        (vec!["--bogus"], "--bogus"),
        (vec!["-s", "nope"], "knows: demo"),
        (vec!["-s", "/nonexistent/workers.toml"], "cannot read"),
        // A URL that cannot be an address stops at the flags, before any connection.
        (
            vec!["-s", "demo", "--redis-url", "redis://127.0.0.1:port/0"],
            "invalid Redis address",
        ),
        (
            vec!["-s", "demo", "--timeout", "soon"],
            "invalid value 'soon'",
        ),
        // Bare `psychiq` names what it could serve instead of running the demo workers.
        (
            vec![],
            "name the workers to serve with -s: demo, demo-limits",
        ),
    ] {
        let out = psychiq().args(&args).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error:") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }

    let out = psychiq()
        .args(["-s", "demo", "-o", "127.0.0.1", "-p", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("redis://127.0.0.1:1")
            && errors[0].contains("Check that redis-server is running")
            && errors[0].contains("apt-get install redis-server"),
        "{stderr}"
    );
}

#[tokio::test]
async fn term_lets_short_jobs_finish_and_pushes_long_ones_back() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-sleep.jsonl", ns.namespace));
    let out_path = out.to_string_lossy().to_string();
    for _ in 0..2 {
        ns.client.push(Job::new("Sleep", (300, &out_path))?).await?;
    }
    for _ in 0..3 {
        ns.client.push(Job::new("Sleep", (30_000,))?).await?;
    }
    let queue = ns.keys().queue("default");
    let mut pushed = ns.lrange(&queue).await;
    pushed.retain(|raw| raw.contains("30000"));

    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "5", "-t", "2"]);
    wait_until(Duration::from_secs(10), "all five jobs fetched", || async {
        ns.lrange(&queue).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped_at = Instant::now();
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(8)),
        0,
        "log:\n{}",
        server.log_text()
    );
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "exited {:?} after TERM with -t 2",
        stopped_at.elapsed()
    );

    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    assert_eq!(lines.lines().count(), 2, "the short jobs finished");
    let mut back = ns.lrange(&queue).await;
    back.sort();
    pushed.sort();
    assert_eq!(back, pushed, "the unfinished jobs are back, byte for byte");
    assert!(server.log_text().contains("Pushed unfinished jobs back"));
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 2);
    let members: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(ns.keys().key("processes")))
        .await;
    assert!(members.is_empty(), "deregistered on exit");
    Ok(())
}

#[tokio::test]
async fn tstp_quiets_and_term_stops() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut server = Spawned::start(&ns, &["-s", "demo"]);
    let identity = ns.registered_identity().await;
    server.signal("TSTP");
    wait_quiet(&ns, &identity).await;
    ns.client.push(Job::new("Noop", ())?).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ns.lrange(&ns.keys().queue("default")).await.len(),
        1,
        "quiet: nothing fetched"
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(8)), 0);
    Ok(())
}

#[tokio::test]
async fn remote_quiet_and_stop_through_the_signals_list() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-g", "remote"]);
    let identity = ns.registered_identity().await;
    let signals = format!("{}-signals", ns.keys().key(&identity));
    let () = ns
        .query(redis::cmd("LPUSH").arg(&signals).arg("TSTP"))
        .await;
    wait_quiet(&ns, &identity).await;
    let () = ns
        .query(redis::cmd("LPUSH").arg(&signals).arg("TTIN"))
        .await;
    let () = ns
        .query(redis::cmd("LPUSH").arg(&signals).arg("TERM"))
        .await;
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    let log = server.log_text();
    assert!(log.contains("TTIN: running jobs"), "{log}");
    Ok(())
}

#[tokio::test]
async fn command_workers_run_programs_from_a_toml_file() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let dir = std::env::temp_dir().join(&ns.namespace);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.txt");
    let toml = format!(
        r#"
[workers."Shell::Record"]
command = ["sh", "-c", 'cat >> "$OUT"; printf "\n%s %s %s %s\n" "$PSYCHIQ_JID" "$PSYCHIQ_CLASS" "$PSYCHIQ_QUEUE" "$(pwd)" >> "$OUT"']
dir = "{dir}"
env = {{ OUT = "{out}" }}

[workers."Shell::Fail"]
command = ["sh", "-c", 'echo "noise"; echo "first line" >&2; echo "bad things happened" >&2; exit 3']

[workers."Shell::Slow"]
command = ["sleep", "30"]
timeout = 1
"#,
        dir = dir.display(),
        out = out.display()
    );
    let file = dir.join("workers.toml");
    std::fs::write(&file, toml).unwrap();

    let jid = ns
        .client
        .push(Job::new("Shell::Record", ("ünï 😀 עברית", { 1 }, [true]))?.queue("shell"))
        .await?;
    // A Rails perform_later for the same class: the program gets ActiveJob's arguments.
    let aj_jid = ns
        .client
        .push(Job::active_job("Shell::Record", ("from rails", 2))?.queue("shell"))
        .await?;
    ns.client
        .push(Job::new("Shell::Fail", ())?.queue("shell"))
        .await?;
    ns.client
        .push(Job::new("Shell::Slow", ())?.queue("shell"))
        .await?;
    // One at a time: each run's two writes to OUT stay together.
    let mut server = Spawned::start(
        &ns,
        &["-s", file.to_str().unwrap(), "-q", "shell", "-c", "1"],
    );

    let retry_key = ns.keys().retry();
    wait_until(
        Duration::from_secs(10),
        "two successes and two failures",
        || async {
            ns.zrange(&retry_key).await.len() == 2
                && std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() >= 4)
        },
    )
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(8)), 0);

    // Each run wrote its arguments, then its jid, class, queue and directory.
    let written = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let run_of = |jid: &str| {
        let at = lines.iter().position(|l| l.starts_with(jid)).unwrap();
        (
            serde_json::from_str::<Value>(lines[at - 1]).unwrap(),
            lines[at],
        )
    };
    let (args, info) = run_of(&jid);
    assert_eq!(args, serde_json::json!(["ünï 😀 עברית", 1, [true]]));
    assert_eq!(info, format!("{jid} Shell::Record shell {}", dir.display()));
    let (args, info) = run_of(&aj_jid);
    assert_eq!(args, serde_json::json!(["from rails", 2]));
    assert_eq!(
        info,
        format!("{aj_jid} Shell::Record shell {}", dir.display())
    );

    let failures: Vec<Value> = ns
        .zrange(&retry_key)
        .await
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let fail = failures
        .iter()
        .find(|j| j["class"] == "Shell::Fail")
        .unwrap();
    assert_eq!(fail["error_class"], "Psychiq::CommandFailed");
    assert_eq!(fail["error_message"], "first line\nbad things happened");
    let slow = failures
        .iter()
        .find(|j| j["class"] == "Shell::Slow")
        .unwrap();
    assert_eq!(slow["error_class"], "Psychiq::CommandTimeout");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_each_jobs_context() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jid = ns.client.push(Job::new("Noop", ())?).await?;
    let failed_jid = ns.client.push(Job::new("Fail", ("nope",))?).await?;
    let mut server = Spawned::start(&ns, &["-s", "demo", "--log-format", "json"]);
    wait_until(Duration::from_secs(10), "both jobs run", || async {
        ns.zrange(&ns.keys().retry()).await.len() == 1
            && ns.lrange(&ns.keys().queue("default")).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(8)), 0);
    let lines: Vec<Value> = server
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let find = |message: &str, jid: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["jid"] == jid)
            .cloned()
    };
    let done = find("done", &jid).expect("a done line for the Noop job");
    assert_eq!(done["class"], "Noop");
    assert_eq!(done["queue"], "default");
    assert!(done["elapsed_ms"].is_number());
    assert!(find("start", &jid).is_some());
    let failed = find("job failed", &failed_jid).expect("a failure line");
    assert_eq!(failed["class"], "Fail");
    assert!(failed["error"].as_str().unwrap().contains("nope"));
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Starting processing (concurrency=25)"))
    }));
    Ok(())
}

#[tokio::test]
async fn the_tour_runs_every_kind_of_job_and_shows_the_failure() {
    let ns = TestNs::new().await;
    let out = psychiq()
        .args(["tour", "--redis-url", &ns.url, "-n", &ns.namespace])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("scheduled 2 s later"), "{stdout}");
    assert!(
        stdout.contains("The Fail job is in the retry set"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("throwaway"),
        "a reachable Redis is used as it is"
    );
    // The README's ETL workflow ran, each step once and in order, and is on the dashboard.
    assert!(stdout.contains(r#"{"etl":"done","pages":3,"#), "{stdout}");
    assert!(
        stdout.contains("merge    succeeded  after parse-0, parse-1, parse-2"),
        "{stdout}"
    );
    assert!(stdout.contains("/workflows/"), "{stdout}");
    // A burst of 1,000 debounced pushes ran once, with the last push's words.
    assert_eq!(stdout.matches("debounced: push").count(), 1, "{stdout}");
    assert!(
        stdout.contains("debounced: push 1000 of 1000, run once"),
        "{stdout}"
    );
    assert!(stdout.contains("x1000 debounced  1 job"), "{stdout}");
    // Tenant B's ten ran before tenant A's 10,000 were done.
    let left: u64 = stdout
        .split("while tenant A still had ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tenant line: {stdout}"));
    assert!(left > 5_000, "tenant B waited for half of A: {left} left");
    // 1000 Noop, 3 Echo, a Sleep, the scheduled Echo, the Fail, 8 workflow steps, the
    // debounced one, tenant A's 10,000 and tenant B's 10. On a slow machine the Fail's
    // first retry (15 to 25 s out) may come round before the tour ends: its retry_count
    // says how many more times it ran.
    let retries = ns.zrange(&ns.keys().retry()).await;
    // It leaves only the failure it shows, in the retry set: no queued or scheduled work.
    assert_eq!(retries.len(), 1, "{retries:?}");
    let reruns = serde_json::from_str::<serde_json::Value>(&retries[0]).unwrap()["retry_count"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ns.get_u64(&ns.keys().stat("processed")).await,
        11_025 + reruns
    );
    assert!(ns.zrange(&ns.keys().schedule()).await.is_empty());
    assert!(ns.lrange(&ns.keys().queue("default")).await.is_empty());
}

/// Runs `psychiq tour` where no Redis answers: in a network namespace of its own, with only
/// its own loopback (`unshare -n` needs root; the test says so and passes without it).
#[test]
fn without_redis_the_tour_starts_a_throwaway_one_or_says_how_to_get_one() {
    let Some(unshare) = which("unshare") else {
        eprintln!("skipped: no unshare(1) here");
        return;
    };
    let probe = std::process::Command::new(&unshare)
        .args(["-n", "true"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: `unshare -n` is not allowed here (it needs root)");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_psychiq");
    let isolated = |path: &str| {
        // Absolute paths: the PATH given is the tour's, without redis-server in one case.
        std::process::Command::new(&unshare)
            .args([
                "-n",
                "/bin/sh",
                "-c",
                "ip link set lo up 2>/dev/null; exec \"$0\" tour",
            ])
            .arg(bin)
            .env("PATH", path)
            .env_remove("RUST_LOG")
            .env_remove("REDIS_URL")
            .output()
            .unwrap()
    };
    if which("redis-server").is_some() {
        let out = isolated(&std::env::var("PATH").unwrap_or_default());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("started a throwaway redis-server at redis://127.0.0.1:"),
            "{stdout}"
        );
        assert!(
            stdout.contains("The Fail job is in the retry set"),
            "{stdout}"
        );
    }
    // No redis-server on the PATH (only `ip`, found by absolute path or not at all).
    let out = isolated("/nonexistent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("redis-server is not installed") && stderr.contains("--redis-url"),
        "{stderr}"
    );
}

/// Where `name` is on the PATH.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// `sleep SECONDS` processes, counted with `pgrep`.
fn processes_named(seconds: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("^sleep {seconds}$")])
        .output()
        .expect("pgrep (procps)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A command worker's program and everything it starts end with the job: at its timeout,
/// and when the server is killed with `kill -9` (the probe's shell left three background
/// sleeps, and after a `kill -9` even the shell, running beside the job's next copy).
#[tokio::test]
async fn a_command_workers_whole_process_group_ends_with_the_job() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let dir = std::env::temp_dir().join(&ns.namespace);
    std::fs::create_dir_all(&dir).unwrap();
    // Sleep lengths no other process uses, so pgrep counts only these.
    let (bg, fg) = (
        format!("313.{}", std::process::id()),
        format!("314.{}", std::process::id()),
    );
    let toml = format!(
        r#"
[workers."Shell::Spawner"]
command = ["sh", "-c", 'for i in 1 2 3; do sleep {bg} & done; sleep {fg}']
timeout = 2

[workers."Shell::Lingerer"]
command = ["sh", "-c", 'for i in 1 2 3; do sleep {bg}1 & done; sleep {fg}1']
"#
    );
    let file = dir.join("workers.toml");
    std::fs::write(&file, toml).unwrap();
    let mut server = Spawned::start(&ns, &["-s", file.to_str().unwrap(), "-q", "shell"]);
    ns.client
        .push(
            Job::new("Shell::Spawner", ())?
                .queue("shell")
                .retry(psychiq::Retry::Max(0)),
        )
        .await?;
    wait_until(
        Duration::from_secs(5),
        "the program and its children",
        || async { processes_named(&bg) == 3 && processes_named(&fg) == 1 },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the timeout to end them all",
        || async {
            ns.zrange(&ns.keys().dead()).await.len() == 1
                && processes_named(&bg) + processes_named(&fg) == 0
        },
    )
    .await;

    ns.client
        .push(Job::new("Shell::Lingerer", ())?.queue("shell"))
        .await?;
    let (bg, fg) = (format!("{bg}1"), format!("{fg}1"));
    wait_until(Duration::from_secs(5), "the second program", || async {
        processes_named(&bg) == 3 && processes_named(&fg) == 1
    })
    .await;
    server.kill9();
    #[cfg(target_os = "linux")]
    wait_until(
        Duration::from_secs(5),
        "the server's death to end them",
        || async { processes_named(&bg) + processes_named(&fg) == 0 },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `psychiq stats | head -1`: a reader that goes away ends an admin command quietly, as it
/// ends `cat`, instead of a panic on the broken pipe.
#[tokio::test]
async fn an_admin_command_whose_reader_went_away_ends_without_a_panic() {
    let ns = TestNs::new().await;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = psychiq()
        .args(["--redis-url", &ns.url, "-n", &ns.namespace, "stats"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE: {:?}",
        out.status
    );
}

/// What a TOML file gets wrong is said when the server starts, naming the entry: an empty
/// class or queue, a program or dir that does not exist, a broken limit; a class a second
/// system also defines is refused instead of silently replaced; a file of periodic entries
/// alone is a system.
#[test]
fn toml_mistakes_are_refused_at_start_with_their_entry_named() {
    let dir = std::env::temp_dir().join(format!("psychiq-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().to_string()
    };
    let refused = [
        ("[workers.\"\"]\ncommand = [\"true\"]", "class name"),
        ("[workers.A]\ncommand = [\"/no/such/program\"]", "not found"),
        (
            "[workers.A]\ncommand = [\"no-such-program-here\"]",
            "not found",
        ),
        (
            "[workers.A]\ncommand = [\"true\"]\ndir = \"/no/such/dir\"",
            "not a directory",
        ),
        (
            "[workers.A]\ncommand = [\"true\"]\n[limits.x]\nkind = \"window\"\nsize = 0\ninterval = 1",
            "size must be at least 1",
        ),
        (
            "[periodic.p]\ncron = \"* * * * *\"\nclass = \"\"",
            "class must name",
        ),
        (
            "[periodic.p]\ncron = \"* * * * *\"\nclass = \"C\"\nqueue = \"\"",
            "queue must be",
        ),
    ];
    for (i, (text, says)) in refused.iter().enumerate() {
        let file = write(&format!("bad{i}.toml"), text);
        let out = psychiq().args(["-s", &file]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
    let echo = write("echo.toml", "[workers.Echo]\ncommand = [\"true\"]");
    let out = psychiq()
        .args(["-s", "demo", "-s", &echo])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"Echo\" is defined by both"), "{stderr}");
    // Periodic entries alone start (and here fail only for want of a Redis).
    let only = write(
        "only.toml",
        "[periodic.p]\ncron = \"* * * * *\"\nclass = \"C\"",
    );
    let out = psychiq()
        .args(["-s", &only, "-o", "127.0.0.1", "-p", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("pass -s"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first TERM says how long it will wait for running jobs; a second stops at once,
/// pushing the running job back to its queue.
#[tokio::test]
async fn a_second_term_stops_at_once_and_pushes_running_jobs_back() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jid = ns.client.push(Job::new("Sleep", (20_000,))?).await?;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-t", "25", "-v"]);
    wait_until(
        Duration::from_secs(10),
        "the Sleep job to start",
        || async { server.log_text().contains("start") },
    )
    .await;
    server.signal("TERM");
    wait_until(Duration::from_secs(5), "the shutdown line", || async {
        server.log_text().contains("waiting up to 25 s")
    })
    .await;
    let asked = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), 0);
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    let queued = ns.lrange(&ns.keys().queue("default")).await;
    assert!(queued.iter().any(|job| job.contains(&jid)), "{queued:?}");
    Ok(())
}
