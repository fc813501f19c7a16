//! Async servers leak connections, not threads: a real asyncio fan-out
//! (`tests/live_async_server.py`) that writes to every client without awaiting drain, with
//! clients that read, one that reads slowly, and clients that stopped reading (a 4 KiB
//! receive buffer). `leakwatch run` counts exactly the stalled ones (checked against two
//! `ss -ti` looks: Send-Q > 0 and `bytes_acked` frozen), reports their bytes, fails
//! `/healthz` on a `max` rule and recovers once they disconnect. CLOSE_WAIT sockets the
//! server forgets to close age tick by tick. All on loopback.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live_async_server.py");

/// The asyncio server, killed (by its pid) and reaped on drop.
struct PushServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl PushServer {
    fn start() -> PushServer {
        let mut child = Command::new("python3")
            .args([SERVER, "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (the asyncio server)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"));
        PushServer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn command(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// A client in `mode` (`p` push, `h` hold); `rcvbuf` set before connecting.
    fn connect(&self, mode: u8, rcvbuf: Option<usize>) -> TcpStream {
        use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        if let Some(n) = rcvbuf {
            setsockopt(&fd, sockopt::RcvBuf, &n).unwrap();
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: self.port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes for the call.
        let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        let mut s = TcpStream::from(fd);
        s.write_all(&[mode]).unwrap();
        s
    }
}

impl Drop for PushServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that reads `per_second` bytes each second (everything, when `None`) until
/// stopped; its thread ends with the flag.
fn reader(mut s: TcpStream, per_second: Option<usize>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            match per_second {
                None => {
                    let _ = s.read(&mut buf);
                }
                Some(n) => {
                    let mut left = n;
                    while left > 0 && !stop.load(Ordering::Relaxed) {
                        let want = left.min(buf.len());
                        match s.read(&mut buf[..want]) {
                            Ok(0) => return,
                            Ok(k) => left -= k,
                            Err(_) => {}
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    });
}

/// One `ss -tin` look at the server's connections: client port → (Send-Q, bytes_acked).
fn ss_look(port: u16) -> BTreeMap<u16, (u64, u64)> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("ss (iproute2)");
    assert!(out.status.success(), "ss failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = BTreeMap::new();
    for pair in lines.chunks(2) {
        let cols: Vec<&str> = pair[0].split_whitespace().collect();
        // Recv-Q Send-Q Local Peer (state left out with a state filter).
        let send_q: u64 = cols[1].parse().unwrap();
        let peer: SocketAddr = cols[3].parse().unwrap();
        let acked = pair
            .get(1)
            .and_then(|d| {
                d.split_whitespace()
                    .find_map(|w| w.strip_prefix("bytes_acked:"))
            })
            .map_or(0, |v| v.parse().unwrap());
        rows.insert(peer.port(), (send_q, acked));
    }
    rows
}

/// What `ss` says is stalled: Send-Q > 0 in both looks `apart` apart and `bytes_acked`
/// unchanged; with the Send-Q of the second look.
fn ss_stalled(port: u16, apart: Duration) -> BTreeMap<u16, u64> {
    let first = ss_look(port);
    std::thread::sleep(apart);
    let second = ss_look(port);
    second
        .into_iter()
        .filter(|(p, (q, acked))| {
            *q > 0 && first.get(p).is_some_and(|(q0, a0)| *q0 > 0 && a0 == acked)
        })
        .map(|(p, (q, _))| (p, q))
        .collect()
}

fn local_port(s: &TcpStream) -> u16 {
    s.local_addr().unwrap().port()
}

/// Poll `f` (bounded by `within`) until it returns `Some`.
fn within<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const JUDGE: &str = r#"interval = "250ms"
[judge]
window = "30s"
min_samples = 3
min_span = "1s"
warmup = "0s"
fail_after = 2
recover_after = 2
stall_after = "2s"
stuck_after = "2s"
"#;

fn daemon_for(dir: &std::path::Path, pid: i32, rules: &str) -> Daemon {
    let cfg = config_file(
        dir,
        "async.toml",
        &format!("{JUDGE}[[target]]\nname = \"push\"\npid = {pid}\n{rules}"),
    );
    Daemon::start(&["-c", cfg.to_str().unwrap()])
}

/// The stalled sockets' remote ports in `/status`.
fn stalled_ports(status: &serde_json::Value) -> Option<BTreeSet<u16>> {
    let st = &status["targets"][0]["sample"]["tcp_stalled"];
    let list = st["sockets"].as_array()?;
    Some(
        list.iter()
            .filter_map(|s| s["remote"].as_str()?.parse::<SocketAddr>().ok())
            .map(|a| a.port())
            .collect(),
    )
}

#[test]
fn stalled_consumers_are_counted_reported_judged_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let server = PushServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let c = server.connect(b'p', None);
        readers.push(local_port(&c));
        reader(c, None, stop.clone());
    }
    // Reads 256 KiB a second of the 640 KB/s pushed: slow, never stopped.
    let slow = server.connect(b'p', None);
    let slow_port = local_port(&slow);
    reader(slow, Some(256 << 10), stop.clone());
    let stalled: Vec<TcpStream> = (0..2).map(|_| server.connect(b'p', Some(4096))).collect();
    let stalled_set: BTreeSet<u16> = stalled.iter().map(local_port).collect();

    let rules = "[target.rules.tcp_stalled]\nmax = 1\n";
    let d = daemon_for(dir.path(), server.pid(), rules);

    // leakwatch lists exactly the two that stopped reading.
    let seen = within(Duration::from_secs(60), || {
        let s = d.status();
        let ports = stalled_ports(&s)?;
        let st = &s["targets"][0]["sample"]["tcp_stalled"];
        (ports == stalled_set && st["count"] == 2).then_some(s)
    });
    let s = seen.unwrap_or_else(|| panic!("never exactly the stalled two: {}", d.status()));
    let st = &s["targets"][0]["sample"]["tcp_stalled"];
    println!("stalled: {st}");
    assert!(!stalled_set.contains(&slow_port) && !readers.iter().any(|p| stalled_set.contains(p)));

    // `ss -ti` agrees: the same two, with the same Send-Q leakwatch reports (a full send
    // buffer does not move while nothing is acknowledged).
    let by_ss = ss_stalled(server.port, Duration::from_millis(2500));
    assert_eq!(by_ss.keys().copied().collect::<BTreeSet<_>>(), stalled_set);
    let ss_bytes: u64 = by_ss.values().sum();
    let agreed = within(Duration::from_secs(20), || {
        let s = d.status();
        let st = &s["targets"][0]["sample"]["tcp_stalled"];
        (st["send_queue_bytes"].as_u64() == Some(ss_bytes)).then_some(())
    });
    assert!(agreed.is_some(), "ss Send-Q {ss_bytes}: {st}");
    assert!(st["write_memory_bytes"].as_u64().unwrap() >= st["send_queue_bytes"].as_u64().unwrap());
    let one = &st["sockets"][0];
    assert!(one["stalled_for_ms"].as_u64().unwrap() >= 2000, "{one}");
    assert_eq!(one["window"]["peer_window_bytes"], 0, "{one}");
    assert_eq!(st["by_peer"][0]["sockets"], 2, "{st}");
    assert_eq!(st["by_peer"][0]["peer"]["inbound"], true, "{st}");

    // /healthz fails on `max = 1`; /metrics has the count and the bytes.
    let failed = within(Duration::from_secs(30), || {
        (d.get("/healthz").0 == 503).then_some(())
    });
    assert!(failed.is_some(), "{}", d.get("/healthz").1);
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("leakwatch_tcp_stalled_sockets{target=\"push\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("leakwatch_tcp_stalled_bytes{kind=\"send_queue\",target=\"push\"}"));

    // The slow reader is behind (data waits in its Send-Q) yet was never listed, in any
    // tick seen: it acknowledges a little every second.
    let behind = within(Duration::from_secs(20), || {
        (ss_look(server.port).get(&slow_port)?.0 > 0).then_some(())
    });
    assert!(behind.is_some(), "the slow reader never fell behind");
    for _ in 0..8 {
        let ports = stalled_ports(&d.status()).unwrap_or_default();
        assert!(
            !ports.contains(&slow_port),
            "the slow reader was called stalled"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The stalled clients disconnect: 0, and /healthz recovers.
    drop(stalled);
    let recovered = within(Duration::from_secs(60), || {
        let s = d.status();
        let n = s["targets"][0]["sample"]["tcp_stalled"]["count"].as_u64();
        (n == Some(0) && d.get("/healthz").0 == 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    assert!(recovered.is_some(), "{}", d.status());
}

#[test]
fn close_wait_ages_tick_by_tick_and_a_new_socket_starts_young() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = PushServer::start();
    // Three clients close; the server never closes its ends.
    for _ in 0..3 {
        let c = server.connect(b'h', None);
        drop(c);
    }
    let d = daemon_for(dir.path(), server.pid(), "");
    let age = |d: &Daemon| {
        let s = d.status();
        let a = &s["targets"][0]["sample"]["close_wait_age"];
        (a["oldest_ms"].as_u64(), a["aged"].as_u64())
    };
    let three = within(Duration::from_secs(30), || {
        let s = d.status();
        (s["targets"][0]["sample"]["tcp"]["states"]["close_wait"] == 3).then_some(())
    });
    assert!(three.is_some(), "{}", d.status());
    let mut last = 0;
    let mut rises = 0;
    let mut aged = None;
    for _ in 0..20 {
        let (oldest, n) = age(&d);
        let oldest = oldest.expect("close_wait_age in /status");
        assert!(oldest >= last, "the age went back: {oldest} < {last}");
        rises += u32::from(oldest > last);
        last = oldest;
        if oldest >= 2_500 {
            aged = n;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(rises >= 3, "the age grew tick by tick");
    assert_eq!(aged, Some(3), "all three older than stuck_after");
    let (_, metrics) = d.get("/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("leakwatch_tcp_close_wait_oldest_seconds{target=\"push\"}"))
        .expect("the metric");
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs >= 2.5, "{line}");

    // Closed and replaced by a new one: the new socket starts young.
    assert_eq!(server.command("release"), "released 3");
    drop(server.connect(b'h', None));
    let young = within(Duration::from_secs(30), || {
        let s = d.status();
        let cw = s["targets"][0]["sample"]["tcp"]["states"]["close_wait"].as_u64();
        let (oldest, n) = age(&d);
        (cw == Some(1) && oldest? < 2_000 && n == Some(0)).then_some(())
    });
    assert!(young.is_some(), "{}", d.status());
}
