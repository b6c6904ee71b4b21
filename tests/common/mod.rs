//! Shared test helpers: a fresh namespace per test on the real Redis, a server running in
//! the background, and workers that record what they were given.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psychiq::RedisConnection;
use psychiq::{
    Client, JobError, JobResult, Keys, RedisConfig, Registry, Server, ServerConfig, Worker,
};
use redis::Commands;
use serde_json::Value;

/// The Redis the tests use: `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A namespace of its own for one test; its keys are deleted when it is dropped.
pub struct TestNs {
    pub url: String,
    pub namespace: String,
    pub redis: RedisConfig,
    /// Where this test's jobs live; its client and servers are built from it.
    pub jobs: psychiq::Config,
    pub client: Client,
}

impl TestNs {
    pub async fn new() -> TestNs {
        TestNs::on(&redis_url()).await
    }

    /// A namespace on the Redis at `url`.
    pub async fn on(url: &str) -> TestNs {
        let namespace = format!("psychiq-test-{}", &psychiq::__private::new_jid()[..12]);
        let redis = RedisConfig::from_url(url).unwrap();
        let jobs = psychiq::Config::new(redis.clone()).namespace(&namespace);
        let client = jobs.client().await.expect("tests need Redis: see README");
        TestNs {
            url: url.to_string(),
            namespace,
            redis,
            jobs,
            client,
        }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(&self.namespace)
    }

    pub fn conn(&self) -> RedisConnection {
        self.client.redis_connection().expect("a Redis client")
    }

    pub fn config(&self) -> ServerConfig {
        self.jobs
            .server()
            .poll_interval(Duration::from_millis(200))
            .shutdown_timeout(Duration::from_secs(5))
    }

    /// Runs a command, retrying for a few seconds (a test may have restarted its Redis).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let started = Instant::now();
        loop {
            match cmd.query_async(&mut self.conn()).await {
                Ok(value) => return value,
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    panic!("redis command: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn zrange(&self, key: &str) -> Vec<String> {
        self.query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
            .await
    }

    pub async fn lrange(&self, key: &str) -> Vec<String> {
        self.query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1))
            .await
    }

    pub async fn get_u64(&self, key: &str) -> u64 {
        let v: Option<u64> = self.query(redis::cmd("GET").arg(key)).await;
        v.unwrap_or(0)
    }

    /// Waits until a server has registered in this namespace; returns its identity.
    pub async fn registered_identity(&self) -> String {
        let processes = self.keys().key("processes");
        wait_until(Duration::from_secs(10), "a server to register", || async {
            let members: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&processes)).await;
            !members.is_empty()
        })
        .await;
        let members: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&processes)).await;
        members[0].clone()
    }

    pub async fn lpush_raw(&self, queue: &str, raw: &str) {
        let () = self
            .query(redis::cmd("LPUSH").arg(self.keys().queue(queue)).arg(raw))
            .await;
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match conn.scan_match(format!("{}:*", self.namespace)) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// A server running in the background until [`RunningServer::stop`].
pub struct RunningServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<psychiq::Result<()>>,
}

impl RunningServer {
    pub fn start(config: ServerConfig, registry: Registry) -> RunningServer {
        RunningServer::start_server(Server::new(config, registry))
    }

    /// Runs a server built by the test (with middleware or hooks).
    pub fn start_server(server: Server) -> RunningServer {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        RunningServer {
            stop: Some(tx),
            handle,
        }
    }

    /// Waits for the server to stop by itself (e.g. a remote TERM).
    pub async fn wait(self, limit: Duration) {
        tokio::time::timeout(limit, self.handle)
            .await
            .expect("server stopped in time")
            .expect("server task")
            .expect("server ran");
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        self.handle.await.expect("server task").expect("server ran");
    }
}

/// Waits until `check` holds, failing the test with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Records the arguments of every job it runs, in order. Class name `Record`.
#[derive(Clone, Default)]
pub struct Record {
    pub seen: Arc<Mutex<Vec<Value>>>,
}

impl Record {
    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Worker for Record {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        self.seen.lock().unwrap().push(Value::Array(args));
        Ok(())
    }
}

/// Always fails, keeping a backtrace. Class name `Flaky`.
pub struct Flaky;

impl Worker for Flaky {
    type Args = Vec<Value>;
    fn options() -> psychiq::WorkerOptions {
        psychiq::WorkerOptions::default().backtrace(psychiq::Backtrace::All)
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        Err(JobError::new(
            "PaymentDeclined",
            format!("declined {}", Value::Array(args)),
        )
        .with_backtrace(vec!["src/billing.rs:10".into(), "src/jobs.rs:42".into()]))
    }
}

/// Typed arguments, to test shape errors. Class name `Typed`.
pub struct Typed;

impl Worker for Typed {
    type Args = (u32, String);
    async fn perform(&self, _: (u32, String)) -> JobResult {
        Ok(())
    }
}

/// Panics. Class name `Panicky`.
pub struct Panicky;

impl Worker for Panicky {
    type Args = Vec<Value>;
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        panic!("worker exploded")
    }
}

pub fn registry_with(record: &Record) -> Registry {
    let mut registry = Registry::new();
    registry
        .register(record.clone())
        .register(Flaky)
        .register(Typed)
        .register(Panicky)
        .register(Nap);
    registry
}

/// Sleeps its first argument in milliseconds. Class name `Nap`.
pub struct Nap;

impl Worker for Nap {
    type Args = (u64,);
    async fn perform(&self, (ms,): (u64,)) -> JobResult {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

/// The real `psychiq` binary, with no Redis settings from the environment.
pub fn psychiq() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_psychiq"));
    command.env_remove("REDIS_URL").env_remove("RUST_LOG");
    command
}

/// Runs an admin command of the real binary on `ns` (its Redis and namespace added).
pub fn psychiq_on(ns: &TestNs, args: &[&str]) -> std::process::Output {
    psychiq()
        .args(args)
        .args(["--redis-url", &ns.url, "-n", &ns.namespace])
        .output()
        .expect("the psychiq binary runs")
}

/// A server process, killed if the test ends before it exits.
pub struct Spawned {
    pub child: Child,
    log: PathBuf,
}

impl Spawned {
    pub fn start(ns: &TestNs, args: &[&str]) -> Spawned {
        let log = std::env::temp_dir().join(format!(
            "{}-{}.log",
            ns.namespace,
            psychiq::__private::new_jid()
        ));
        let stderr = std::fs::File::create(&log).unwrap();
        Spawned::start_logging_to(ns, args, stderr, log)
    }

    /// A server whose clock runs `offset` (faketime's syntax: "+3600s") off the machine's,
    /// through Debian's libfaketime preloaded (the `faketime` command would stand between
    /// the test and the server's signals).
    pub fn start_with_clock(ns: &TestNs, args: &[&str], offset: &str) -> Spawned {
        const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
        assert!(
            std::path::Path::new(LIB).exists(),
            "{LIB} is missing: apt-get install faketime"
        );
        let log = std::env::temp_dir().join(format!(
            "{}-{}.log",
            ns.namespace,
            psychiq::__private::new_jid()
        ));
        let child = psychiq()
            .env("LD_PRELOAD", LIB)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(["--redis-url", &ns.url, "-n", &ns.namespace])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the psychiq binary starts");
        Spawned { child, log }
    }

    /// A server whose stderr is `stderr` (`/dev/full`, say); `log` is where the test
    /// reads it back, if it can.
    pub fn start_logging_to(
        ns: &TestNs,
        args: &[&str],
        stderr: std::fs::File,
        log: PathBuf,
    ) -> Spawned {
        let child = psychiq()
            .args(["--redis-url", &ns.url, "-n", &ns.namespace])
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the psychiq binary starts");
        Spawned { child, log }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(
                started.elapsed() < limit,
                "did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap it, so its pid is gone as after a real crash.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for it to exit; `None` when a signal ended it (e.g. an abort).
    pub fn wait_status(&mut self, limit: Duration) -> Option<Option<i32>> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether Debian's Ruby Sidekiq (with redis-namespace) is installed. Without it, Ruby checks
/// are skipped with a message, unless `PSYCHIQ_REQUIRE_RUBY` is set (as `.ci/run` does).
pub fn ruby_sidekiq_available() -> bool {
    let ok = Command::new("ruby")
        .args(["-e", "require 'sidekiq'; require 'redis-namespace'"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("PSYCHIQ_REQUIRE_RUBY").is_err(),
            "Ruby Sidekiq is required here: apt-get install ruby-sidekiq ruby-redis-namespace"
        );
        eprintln!(
            "skipped: Ruby Sidekiq not installed (apt-get install ruby-sidekiq ruby-redis-namespace)"
        );
    }
    ok
}

/// Runs a Ruby script with `namespace` as its argument and `url` as `REDIS_URL`; returns its
/// standard output, failing the test with its standard error.
pub fn ruby(script: &str, namespace: &str, url: &str) -> Vec<u8> {
    let out = Command::new("ruby")
        .args(["-e", script, namespace])
        .env("REDIS_URL", url)
        .output()
        .expect("ruby runs");
    assert!(
        out.status.success(),
        "ruby failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A Redis of this test's own (AOF on, so a restart keeps the data), on a free port, for
/// tests that restart it, cut its connections or change its settings.
pub struct OwnRedis {
    pub port: u16,
    /// Extra `redis-server` arguments (e.g. `--requirepass`), kept for restarts.
    args: Vec<String>,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        OwnRedis::start_with(&[])
    }

    /// Started with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> OwnRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("psychiq-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = OwnRedis {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir,
            child: None,
        };
        redis.launch();
        redis
    }

    pub fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let started = Instant::now();
        // Up when it answers at all (with a password set, it answers NOAUTH).
        while Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "ping"])
            .output()
            .map(|o| o.stdout.is_empty())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "own redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .output();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_as(None, args)
    }

    /// redis-cli logged in with `password` (for the default user).
    pub fn cli_as(&self, password: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.arg("-p").arg(self.port.to_string());
        if let Some(password) = password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command.args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails while `failing` is set. Class `Interop::Charge`; retries with Sidekiq's defaults.
#[derive(Clone)]
pub struct Charge {
    pub failing: Arc<AtomicBool>,
    pub record: Record,
}

impl Worker for Charge {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "Interop::Charge".into()
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        if self.failing.load(Ordering::SeqCst) {
            return Err(JobError::new("PaymentDeclined", "card <4242> declined"));
        }
        self.record.seen.lock().unwrap().push(Value::Array(args));
        Ok(())
    }
}

impl Charge {
    /// A charge that fails until `failing` is cleared.
    pub fn failing() -> Charge {
        Charge {
            failing: Arc::new(AtomicBool::new(true)),
            record: Record::default(),
        }
    }
}

/// A child process killed (and reaped) if the test ends before it does.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Sends TERM and waits for the exit; whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().map(|s| s.success()).unwrap_or(false)
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to its end: its exit code, standard output and standard error.
pub fn output_of(command: &mut Command) -> (Option<i32>, String, String) {
    let out = command.output().expect("the command runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
