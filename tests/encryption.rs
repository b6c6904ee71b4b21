//! Arguments encrypted at rest: sealed in Redis, in the retry and dead sets, on the
//! dashboard, in the CLI and in the logs; opened for the worker alone; keys rotate.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use psychiq::encryption::{KEYS_ENV, Keyring};
use psychiq::{Job, JobError, JobResult, Registry, Worker, WorkerOptions};

const OLD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEW: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const SECRET: &str = "4242-4242-4242-4242";

fn keys(text: &str) -> Keyring {
    Keyring::parse(text).unwrap()
}

/// Records its arguments; fails its first run when told to.
#[derive(Clone, Default)]
struct Charge {
    seen: Arc<Mutex<Vec<(u32, String)>>>,
}

impl Worker for Charge {
    type Args = (u32, String, bool);
    fn options() -> WorkerOptions {
        WorkerOptions::default().encrypt()
    }
    async fn perform(&self, (n, card, fail_first): (u32, String, bool)) -> JobResult {
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let first = !seen.iter().any(|(m, _)| *m == n);
            seen.push((n, card));
            first
        };
        if fail_first && first {
            return Err(JobError::new("Declined", "the bank said no"));
        }
        Ok(())
    }
}

async fn raw_everywhere(ns: &TestNs) -> String {
    let mut all = ns.lrange(&ns.keys().queue("default")).await;
    all.extend(ns.zrange(&ns.keys().schedule()).await);
    all.extend(ns.zrange(&ns.keys().retry()).await);
    all.extend(ns.zrange(&ns.keys().dead()).await);
    all.join("\n")
}

#[tokio::test]
async fn sealed_in_redis_opened_for_the_worker_and_kept_sealed_through_a_retry()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // Pushed by a client on the old key, and by one that has rotated to the new key.
    let mut old_client = ns.client.clone();
    old_client.encrypt_with(keys(&format!("2024:{OLD}")));
    let mut client = ns.client.clone();
    client.encrypt_with(keys(&format!("2024:{OLD},2025:{NEW}")));
    old_client
        .push(Job::of::<Charge>(&(1, SECRET.to_string(), false))?)
        .await?;
    client
        .push(Job::of::<Charge>(&(2, SECRET.to_string(), true))?)
        .await?;
    // A job whose own push asks, for a class with no such worker option.
    client
        .push(Job::new("Charge", (3, SECRET, false))?.encrypt())
        .await?;
    let raw = raw_everywhere(&ns).await;
    assert!(!raw.contains(SECRET), "{raw}");
    assert!(raw.contains(r#""psychiq_encrypted":"2024""#), "{raw}");
    assert_eq!(raw.matches(r#""psychiq_encrypted":"2025""#).count(), 2);
    // Listings show it as encrypted.
    let api = ns.jobs.api().await?;
    let listed = api.queue_jobs("default", 0, 10).await?;
    assert!(listed.iter().all(|j| j.display_args() == "[encrypted]"));
    let output = psychiq_on(&ns, &["jobs", "default"]);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        !shown.contains(SECRET) && shown.contains("[encrypted]"),
        "{shown}"
    );

    let worker = Charge::default();
    let mut registry = Registry::new();
    registry.register(worker.clone());
    let config = ns
        .config()
        .encryption(keys(&format!("2024:{OLD}\n2025:{NEW}")));
    let server = RunningServer::start(config, registry);
    wait_until(Duration::from_secs(10), "three runs", || async {
        worker.seen.lock().unwrap().len() == 3
    })
    .await;
    // Job 2 failed once: its retry keeps the sealed arguments.
    wait_until(Duration::from_secs(5), "the retry", || async {
        !ns.zrange(&ns.keys().retry()).await.is_empty()
    })
    .await;
    let retry = ns.zrange(&ns.keys().retry()).await.join("\n");
    assert!(
        retry.contains("psychiq_encrypted") && !retry.contains(SECRET),
        "{retry}"
    );
    server.stop().await;
    let seen = worker.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, card)| card == SECRET), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn a_server_without_the_key_kills_the_job_saying_which_key() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut client = ns.client.clone();
    client.encrypt_with(keys(&format!("2025:{NEW}")));
    client
        .push(Job::of::<Charge>(&(1, SECRET.to_string(), false))?)
        .await?;
    // Pushing an encrypted job with no keys is refused, saying how to give some.
    let refused = ns
        .client
        .push(Job::of::<Charge>(&(2, SECRET.to_string(), false))?)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains(KEYS_ENV), "{refused}");

    let worker = Charge::default();
    let mut registry = Registry::new();
    registry.register(worker.clone());
    let config = ns.config().encryption(keys(&format!("2024:{OLD}")));
    let server = RunningServer::start(config, registry);
    wait_until(Duration::from_secs(10), "the death", || async {
        !ns.zrange(&ns.keys().dead()).await.is_empty()
    })
    .await;
    server.stop().await;
    assert!(worker.seen.lock().unwrap().is_empty(), "it ran");
    let dead = ns.zrange(&ns.keys().dead()).await.join("\n");
    assert!(dead.contains("Psychiq::EncryptionError"), "{dead}");
    assert!(
        dead.contains("\\\"2025\\\"") || dead.contains("2025"),
        "{dead}"
    );
    assert!(!dead.contains(SECRET));
    Ok(())
}

#[tokio::test]
async fn the_binary_reads_its_keys_from_the_environment_and_logs_no_argument() {
    let ns = TestNs::new().await;
    let dir = tempdir();
    let out = dir.join("stdin.json");
    let toml = dir.join("workers.toml");
    std::fs::write(
        &toml,
        format!(
            "[workers.Charge]\ncommand = [\"sh\", \"-c\", \"cat > {}\"]\n\
             [workers.Decline]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; echo declined >&2; exit 3\"]\n",
            out.display()
        ),
    )
    .unwrap();
    let mut client = ns.client.clone();
    client.encrypt_with(keys(&format!("2025:{NEW}")));
    client
        .push(Job::new("Charge", (1, SECRET)).unwrap().encrypt())
        .await
        .unwrap();
    client
        .push(
            Job::new("Decline", (2, SECRET))
                .unwrap()
                .retry(psychiq::Retry::Max(0))
                .encrypt(),
        )
        .await
        .unwrap();
    let log = dir.join("server.log");
    let mut child = psychiq()
        .args(["--redis-url", &ns.url, "-n", &ns.namespace, "-v", "-s"])
        .arg(&toml)
        .env(KEYS_ENV, format!("2024:{OLD},2025:{NEW}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(15), "both jobs", || async {
        out.exists() && !ns.zrange(&ns.keys().dead()).await.is_empty()
    })
    .await;
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let opened = std::fs::read_to_string(&out).unwrap();
    assert!(opened.contains(SECRET), "the program got {opened}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Decline"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(NEW), "{text}");
    assert!(!ns.zrange(&ns.keys().dead()).await.join("").contains(SECRET));
    // A malformed key stops the server at once, without echoing it.
    let bad = psychiq()
        .args(["--redis-url", &ns.url, "-n", &ns.namespace, "-s"])
        .arg(&toml)
        .env(KEYS_ENV, "k1:c2VjcmV0LWtleQ==")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("32") && !said.contains("c2VjcmV0"), "{said}");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("psychiq-enc-{}", psychiq::__private::new_jid()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn paths_that_do_not_seal_refuse_an_encrypted_job() {
    use psychiq::periodic::{PeriodicJob, Schedule};
    let job = Job::new("Charge", (1, SECRET, false)).unwrap().encrypt();
    let refused = PeriodicJob::new("nightly", Schedule::cron("0 3 * * *").unwrap(), job)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("encrypted") && refused.contains("periodic"),
        "{refused}"
    );
    let workflow = psychiq::workflow::Workflow::new("w").step(
        "a",
        Job::new("Charge", (1, SECRET, false)).unwrap().encrypt(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ns = TestNs::new().await;
        let refused = workflow.push(&ns.client).await.unwrap_err().to_string();
        assert!(refused.contains("workflow"), "{refused}");
    });
}
