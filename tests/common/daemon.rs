//! A real `leakwatch run` for end-to-end tests: started with `--log-format json` on an
//! ephemeral loopback port (read back from its log), stopped by its pid on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leakwatch::test_support::http as client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::BIN;

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// `leakwatch run ARGS --listen 127.0.0.1:0`.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(Command::new(BIN).arg("run").args(args))
    }

    /// A prepared command (e.g. under `setpriv`) that runs `leakwatch run ...`.
    pub fn start_with(cmd: &mut Command) -> Daemon {
        Self::start_listening(cmd, "127.0.0.1:0")
    }

    /// [`start_with`](Self::start_with) on another address (e.g. `0.0.0.0:0` in a network
    /// namespace); `addr` is then the address leakwatch logged (`0.0.0.0:PORT`).
    pub fn start_listening(cmd: &mut Command, listen: &str) -> Daemon {
        let mut child = cmd
            .args(["--listen", listen, "--log-format", "json"])
            .env("LEAKWATCH_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leakwatch run");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listen_addr(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("leakwatch run did not start: {:?}", log.lock().unwrap());
            }
        };
        Daemon { child, addr, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `GET path`: status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Send a raw request; the status code and body of the answer (0 when none).
    pub fn request(&self, raw: &str) -> (u16, String) {
        client::exchange(self.addr, raw.as_bytes(), Duration::from_secs(5))
            .unwrap_or((0, String::new()))
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "/status: {body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// Wait (bounded) until `ticks_total` reaches `n`.
    pub fn wait_ticks(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.status()["ticks_total"].as_u64().unwrap_or(0) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal leakwatch");
    }

    /// Log lines so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM and wait (at most 10 s) for the exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listen_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("listen")?.as_str()?.parse().ok()
}

/// Write a config file into `dir` and return its path.
pub fn config_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}
