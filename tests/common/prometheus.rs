//! A real Prometheus server for the tests: Debian's `prometheus` on a loopback port, its
//! config and storage in a temp dir, killed by its pid on drop (and by the kernel if the
//! test process dies first).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leakwatch::test_support::http as client;
use nix::sys::signal::Signal;

/// `name` from the Debian package `prometheus` (`prometheus`, `promtool`) in `PATH`, or
/// why the test skips (or fails, with `LEAKWATCH_REQUIRE_PROMETHEUS=1`).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        super::skip::skip(
            "LEAKWATCH_REQUIRE_PROMETHEUS",
            &format!("{name} is not installed (Debian package `prometheus`)"),
        );
    }
    found
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Serve `dir`: its `prometheus.yml` as the config and `data/` as the storage. Waits up
    /// to `ready_within` for `/-/ready`.
    pub fn start(binary: &Path, mut dir: tempfile::TempDir, ready_within: Duration) -> Prometheus {
        // A free port can be taken between our probe and Prometheus' bind: try again then.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = File::create(dir.path().join("prometheus.log")).unwrap();
            let mut cmd = Command::new(binary);
            cmd.arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let child = cmd.spawn().expect("start prometheus");
            let mut p = Prometheus { child, addr, dir };
            if p.wait_ready(ready_within) {
                return p;
            }
            let exited = matches!(p.child.try_wait(), Ok(Some(_)));
            if !exited || !p.log().contains("address already in use") {
                panic!("prometheus did not become ready:\n{}", p.log());
            }
            dir = p.take_dir();
        }
        panic!("prometheus found no free port in 3 tries");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.get("/-/ready").0 == 200 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `GET path` as HTTP/1.0, so the answer is never chunked: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let raw = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        client::exchange(self.addr, raw.as_bytes(), Duration::from_secs(5))
            .unwrap_or((0, String::new()))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Kill (by pid) and hand back the temp dir, for another try.
    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}
