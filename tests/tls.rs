//! TLS for real: a private `redis-server` with TLS on (a CA and certificates made by the
//! test with `openssl`), with and without client certificates, through the real `psychiq`
//! binary: a server runs a job over `rediss://`, admin commands read over it, and a
//! certificate from the wrong CA, or a missing client certificate, is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by
/// it, and a second, unrelated CA.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Made in a directory named for `test` (tests run in parallel).
    fn make(test: &str) -> Certificates {
        let dir = std::env::temp_dir().join(format!("psychiq-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&["genrsa", "-out", &format!("{ca}.key"), "2048"]);
            openssl(&[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-key",
                &format!("{ca}.key"),
                "-sha256",
                "-days",
                "2",
                "-subj",
                &format!("/CN=Psychiq test {ca}"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                     keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
                ),
            )
            .unwrap();
            openssl(&["genrsa", "-out", &format!("{name}.key"), "2048"]);
            openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN=psychiq-{name}"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` listening with TLS only, on a port of its own.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(certs: &Certificates, client_certificates: bool) -> TlsRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &certs.path("server.pem")])
            .args(["--tls-key-file", &certs.path("server.key")])
            .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
            .args([
                "--tls-auth-clients",
                if client_certificates { "yes" } else { "no" },
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsRedis { port, child }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `psychiq ARGS` against `url` with `tls` flags; returns (exit code, stdout, stderr).
fn run(url: &str, tls: &[&str], args: &[&str]) -> (Option<i32>, String, String) {
    output_of(
        psychiq()
            .args(["--redis-url", url, "-n", "tls"])
            .args(tls)
            .args(args),
    )
}

fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the job never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn jobs_run_over_tls_and_a_wrong_certificate_says_so() {
    let certs = Certificates::make("jobs");
    let redis = TlsRedis::start(&certs, false);
    let ca = certs.path("ca.pem");
    let tls = ["--tls-ca", ca.as_str()];

    // A server and an enqueue over rediss://, trusting the test's CA.
    let out = certs.dir.join("echo.jsonl");
    let out_path = out.to_string_lossy().into_owned();
    let mut server = KillOnDrop(
        psychiq()
            .args(["--redis-url", &redis.url(), "-n", "tls"])
            .args(tls)
            .args(["-s", "demo", "-c", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let args = serde_json::json!([out_path, "over tls"]).to_string();
    let (code, _, error) = run(&redis.url(), &tls, &["enqueue", "Echo", &args]);
    assert_eq!(code, Some(0), "{error}");
    assert!(wait_for_file(&out).contains("over tls"));
    let (code, stats, _) = run(&redis.url(), &tls, &["stats"]);
    assert_eq!(code, Some(0));
    assert!(stats.contains("processed"));
    assert!(server.terminate());

    // The wrong CA, or none (the system's store does not know the test's CA): refused, with
    // a sentence that says what to check, exit 1.
    let other = certs.path("other-ca.pem");
    for tls in [&["--tls-ca", other.as_str()][..], &[]] {
        let (code, _, error) = run(&redis.url(), tls, &["stats"]);
        assert_eq!(code, Some(1), "{error}");
        assert!(error.contains("TLS handshake failed"), "{error}");
        assert!(error.contains("--tls-ca"), "{error}");
    }
    // A file that is not there is named.
    let (code, _, error) = run(
        &redis.url(),
        &["--tls-ca", "/nonexistent/ca.pem"],
        &["stats"],
    );
    assert_eq!(code, Some(1));
    assert!(
        error.contains("cannot read the TLS CA file /nonexistent/ca.pem"),
        "{error}"
    );
}

#[test]
fn a_redis_that_requires_client_certificates_takes_ours() {
    let certs = Certificates::make("mtls");
    let redis = TlsRedis::start(&certs, true);
    let ca = certs.path("ca.pem");
    let (code, _, error) = run(&redis.url(), &["--tls-ca", &ca], &["stats"]);
    assert_eq!(code, Some(1), "refused without a client certificate");
    assert!(error.contains("--tls-cert"), "{error}");
    let (cert, key) = (certs.path("client.pem"), certs.path("client.key"));
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let (code, stats, error) = run(&redis.url(), &tls, &["stats"]);
    assert_eq!(code, Some(0), "{error}");
    assert!(stats.contains("processed"));
    // Half a pair is a usage error.
    let (code, _, error) = run(&redis.url(), &["--tls-cert", &cert], &["stats"]);
    assert_eq!(code, Some(2), "{error}");
}
