//! Redis Sentinel for real: a master, a replica and three sentinels on loopback ports, all
//! started by the test. The client and the `psychiq` server find the master through the
//! sentinels; the master is killed mid-drain; the server follows the failover without a
//! restart and runs every job the new master holds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use psychiq::{Client, Job, RedisConfig};

/// A `redis-server` (or sentinel) child, killed when dropped.
struct Node {
    port: u16,
    child: Child,
}

impl Node {
    fn start(dir: &Path, port: u16, args: &[&str]) -> Node {
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let node = Node { port, child };
        node.wait_up();
        node
    }

    fn wait_up(&self) {
        let started = Instant::now();
        while cli(self.port, &["ping"]) != "PONG" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A master and its replica on free loopback ports, keeping nothing on disk.
fn master_and_replica(dir: &Path) -> (Node, Node) {
    let (m, r) = (free_port(), free_port());
    let base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let master = Node::start(dir, m, &[&["--port", &m.to_string()][..], &base].concat());
    let (m_port, r_port) = (m.to_string(), r.to_string());
    let replica_args = [
        &[
            "--port",
            r_port.as_str(),
            "--replicaof",
            "127.0.0.1",
            m_port.as_str(),
        ][..],
        &base,
    ]
    .concat();
    let replica = Node::start(dir, r, &replica_args);
    (master, replica)
}

/// Waits until the replica on `port` is in sync with its master.
fn wait_for_sync(port: u16) {
    let started = Instant::now();
    while !cli(port, &["info", "replication"]).contains("master_link_status:up") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never synced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The master, its replica and three sentinels watching them as `psychiq-test`.
struct Topology {
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
    dir: PathBuf,
}

impl Topology {
    fn start() -> Topology {
        let dir = std::env::temp_dir().join(format!("psychiq-sentinel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (master, replica) = master_and_replica(&dir);
        let m = master.port;
        wait_for_sync(replica.port);
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor psychiq-test 127.0.0.1 {m} 2\n\
                     sentinel down-after-milliseconds psychiq-test 1000\n\
                     sentinel failover-timeout psychiq-test 5000\n\
                     sentinel parallel-syncs psychiq-test 1\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            sentinels.push(Node::start(
                &dir,
                port,
                &[conf.to_str().unwrap(), "--sentinel"],
            ));
        }
        let topology = Topology {
            master,
            replica,
            sentinels,
            dir,
        };
        // Failover needs every sentinel to know the replica and each other.
        let started = Instant::now();
        while !topology.sentinels.iter().all(|s| {
            let info = cli(s.port, &["sentinel", "master", "psychiq-test"]);
            info.contains("num-slaves\n1") && info.contains("num-other-sentinels\n2")
        }) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sentinels did not settle"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        topology
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/psychiq-test", hosts.join(","))
    }

    /// The master's port as the sentinels name it.
    fn master_port(&self) -> u16 {
        let answer = cli(
            self.sentinels[0].port,
            &["sentinel", "get-master-addr-by-name", "psychiq-test"],
        );
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_server_follows_a_failover_and_runs_every_job_the_new_master_holds() {
    let mut topology = Topology::start();
    let url = topology.url();
    let config = RedisConfig::from_url(&url).unwrap();
    let client = Client::connect(&config, "sentinel")
        .await
        .expect("a client through Sentinel");
    let out = topology.dir.join("ran.jsonl");
    let path = out.to_string_lossy().to_string();
    const JOBS: usize = 600;
    // Each numbered `Clock` job writes `[started_at, path, n]`; a 20 ms `Sleep` between
    // two of them makes the drain last a few seconds.
    let jobs: Vec<Job> = (0..JOBS)
        .flat_map(|n| {
            [
                Job::new("Clock", (&path, n)).unwrap(),
                Job::new("Sleep", (20,)).unwrap(),
            ]
        })
        .collect();
    client.push_bulk(jobs).await.unwrap();
    // Every job on the replica before the drain starts (replication is asynchronous).
    wait_until(
        Duration::from_secs(10),
        "the jobs on the replica",
        || async {
            cli(topology.replica.port, &["llen", "sentinel:queue:default"])
                == (2 * JOBS).to_string()
        },
    )
    .await;

    let log = topology.dir.join("server.log");
    let mut server = KillOnDrop(
        psychiq()
            .args([
                "--redis-url",
                &url,
                "-n",
                "sentinel",
                "-s",
                "demo",
                "-c",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let ran = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v[2].as_u64())
            .collect::<std::collections::BTreeSet<u64>>()
    };
    wait_until(Duration::from_secs(30), "a third of the jobs", || async {
        ran().len() >= JOBS / 3
    })
    .await;
    let old = topology.master.port;
    topology.master.kill9();
    let killed = Instant::now();
    wait_until(Duration::from_secs(30), "the failover", || async {
        topology.master_port() == topology.replica.port
    })
    .await;
    eprintln!("failover after {:?}", killed.elapsed());
    let draining = Instant::now();
    while ran().len() < JOBS {
        assert!(
            draining.elapsed() < Duration::from_secs(60),
            "{} of {JOBS} jobs ran; new master: queue {} inprogress {:?} clients {}; the server's log:\n{}",
            ran().len(),
            cli(topology.replica.port, &["llen", "sentinel:queue:default"]),
            cli(topology.replica.port, &["keys", "sentinel:inprogress*"]),
            cli(topology.replica.port, &["client", "list"]),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clean = server.terminate();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(clean, "{text}");
    assert_eq!(ran().len(), JOBS, "every job ran at least once");
    // The new master holds no job left to run.
    let left = cli(topology.replica.port, &["llen", "sentinel:queue:default"]);
    assert_eq!(left, "0");
    assert!(
        text.contains("Sentinel"),
        "the server said where it went: {text}"
    );
    eprintln!(
        "old master {old}, new master {}: all {JOBS} jobs ran",
        topology.replica.port
    );
}

#[tokio::test]
async fn with_wait_for_replicas_pushes_and_acknowledgements_reach_the_replica() {
    let dir = std::env::temp_dir().join(format!("psychiq-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (master, mut replica) = master_and_replica(&dir);
    let (m, r) = (master.port, replica.port);
    wait_for_sync(r);
    let url = format!("redis://127.0.0.1:{m}");
    let config = RedisConfig::from_url(&url)
        .unwrap()
        .wait_for_replicas(1, Duration::from_secs(1));
    let client = Client::connect(&config, "wait").await.unwrap();
    let out = dir.join("ran.jsonl");
    let path = out.to_string_lossy().to_string();
    client
        .push(Job::new("Clock", (&path, 1)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        cli(r, &["llen", "wait:queue:default"]),
        "1",
        "on the replica when push returns"
    );

    // A server that waits for the replica on its acknowledgements runs it.
    let mut server = KillOnDrop(
        psychiq()
            .args([
                "--redis-url",
                &url,
                "-n",
                "wait",
                "--wait-replicas",
                "1",
                "-s",
                "demo",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "the job", || async {
        std::fs::read_to_string(&out).is_ok_and(|t| !t.is_empty())
    })
    .await;
    assert!(server.terminate());

    // Without a replica, a push still lands on the master, after the 1 s wait.
    replica.kill9();
    let pushed = Instant::now();
    client
        .push(Job::new("Clock", (&path, 2)).unwrap())
        .await
        .unwrap();
    assert!(
        pushed.elapsed() >= Duration::from_millis(900),
        "{:?}",
        pushed.elapsed()
    );
    assert_eq!(cli(m, &["llen", "wait:queue:default"]), "1");
    let _ = std::fs::remove_dir_all(&dir);
}
