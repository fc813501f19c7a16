//! A hostile network against the real `leakwatch run` (loopback, an ephemeral port):
//! hundreds of slowloris connections trickling header bytes while `/healthz` keeps
//! answering and the slow ones are cut at the header timeout; oversized heads (431), bodies
//! (413), other methods (405) and garbage; a `wrk` flood while the target is polled, with
//! no errors and leakwatch's memory and fds bounded; a `wrk` flood of `/metrics` on 1,000
//! connections during which a fresh `/healthz` is answered and each snapshot is rendered
//! once, not once per scrape (its latency is benches/'s: `bench.py --only flood`).
//!
//! `wrk` is a Debian package `.ci/run` installs; with `LEAKWATCH_REQUIRE_WRK=1` (set there)
//! its absence fails the flood test instead of skipping it. Time bounds are generous: the
//! only latency asserted is the median probe under slowloris (under 1 s); the worst is
//! printed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::LeakyChild;
use leakwatch::test_support::http as client;

const SLOW_CONNECTIONS: usize = 300;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

fn daemon(dir: &std::path::Path, pid: i32) -> Daemon {
    let cfg = config_file(
        dir,
        "http.toml",
        &format!(
            "interval = \"200ms\"\n[http]\nheader_timeout = \"{}s\"\n[[target]]\nname = \"app\"\npid = {pid}\n",
            HEADER_TIMEOUT.as_secs()
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, Duration::from_secs(10)), "{}", d.log_text());
    d
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `GET /healthz` on a fresh connection: status and how long the answer took.
fn probe(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let code = client::exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .map_or(0, |(c, _)| c);
    (code, t.elapsed())
}

/// One slowloris client: a request line and one header byte at a time, never finishing.
struct Slow {
    s: TcpStream,
    opened: Instant,
    closed_after: Option<Duration>,
}

impl Slow {
    fn open(addr: SocketAddr) -> Slow {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("write");
        s.set_nonblocking(true).unwrap();
        Slow {
            s,
            opened: Instant::now(),
            closed_after: None,
        }
    }

    /// Trickle one more byte; note when the server has closed the connection.
    fn poke(&mut self) {
        if self.closed_after.is_some() {
            return;
        }
        let mut buf = [0u8; 256];
        let closed = match self.s.read(&mut buf) {
            Ok(_) => true, // an answer or EOF: either way the server is done with it
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        let closed =
            closed || matches!(self.s.write(b"a"), Err(e) if e.kind() != ErrorKind::WouldBlock);
        if closed {
            self.closed_after = Some(self.opened.elapsed());
        }
    }
}

#[test]
fn slowloris_is_cut_at_the_header_timeout_while_healthz_answers() {
    let child = LeakyChild::spawn(&["--files", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), child.pid());
    let rss0 = common::rss(d.pid());

    let mut slow: Vec<Slow> = (0..SLOW_CONNECTIONS).map(|_| Slow::open(d.addr)).collect();
    let mut probes: Vec<(u16, Duration)> = Vec::new();
    let started = Instant::now();
    while slow.iter().any(|s| s.closed_after.is_none())
        && started.elapsed() < HEADER_TIMEOUT + Duration::from_secs(20)
    {
        slow.iter_mut().for_each(Slow::poke);
        probes.push(probe(d.addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss1 = common::rss(d.pid());
    let open = slow.iter().filter(|s| s.closed_after.is_none()).count();
    let closes: Vec<Duration> = slow.iter().filter_map(|s| s.closed_after).collect();
    let earliest = closes.iter().min().copied().unwrap_or_default();
    let latest = closes.iter().max().copied().unwrap_or_default();
    let mut latencies: Vec<Duration> = probes.iter().map(|p| p.1).collect();
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    println!(
        "slowloris: {SLOW_CONNECTIONS} connections trickling header bytes, cut after \
         {earliest:.1?}..{latest:.1?} (header_timeout {HEADER_TIMEOUT:?}); {} /healthz probes \
         meanwhile, median {median:.1?}, worst {worst:.1?}; leakwatch rss {} -> {} KiB",
        probes.len(),
        rss0 / 1024,
        rss1 / 1024
    );
    assert_eq!(open, 0, "{open} slow connections were never cut");
    assert!(
        earliest >= HEADER_TIMEOUT - Duration::from_millis(500),
        "a slow client was cut before the header timeout: {earliest:?}"
    );
    assert!(
        probes.iter().all(|p| p.0 == 200),
        "a probe failed under slowloris: {probes:?}"
    );
    assert!(median < Duration::from_secs(1), "median probe {median:?}");
    assert!(rss1 < rss0 + 32 * 1024 * 1024, "rss {rss0} -> {rss1}");
}

#[test]
fn oversized_bodies_methods_and_garbage_get_4xx_and_healthz_stays_200() {
    let child = LeakyChild::spawn(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), child.pid());
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let cases: Vec<(&str, String, &[u16])> = vec![
        ("a 64 KiB header", big, &[431]),
        (
            "a body",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                .into(),
            &[413],
        ),
        (
            "a chunked body",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .into(),
            &[413],
        ),
        (
            "POST",
            "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            &[405],
        ),
        (
            "DELETE",
            "DELETE /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            &[405],
        ),
        (
            "a TLS ClientHello",
            String::from_utf8_lossy(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").into(),
            &[400, 0],
        ),
        (
            "a bad version",
            "GET / HTTP/9.9\r\n\r\n".into(),
            &[400, 505, 0],
        ),
        (
            "NULs",
            "\0\0\0\0\r\n\r\n".into(),
            &[400, 0],
        ),
        (
            "a path of 100 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "x".repeat(100 * 1024)),
            &[414, 431, 400, 0],
        ),
    ];
    for (what, raw, want) in cases {
        let (code, body) = d.request(&raw);
        assert!(want.contains(&code), "{what}: {code} {body}");
        assert_eq!(d.get("/healthz").0, 200, "after {what}");
        println!("{what:<20} -> {code}");
    }
}

fn wrk() -> Option<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Some(());
    }
    common::skip::skip(
        "LEAKWATCH_REQUIRE_WRK",
        "wrk is missing: apt-get install wrk",
    );
    None
}

/// A number after `label` in wrk's output (0 when the line is absent).
fn wrk_count(out: &str, label: &str) -> u64 {
    out.split(label)
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_wrk_flood_while_polling_has_no_errors_and_bounded_memory() {
    if wrk().is_none() {
        return;
    }
    let child = LeakyChild::spawn(&["--files", "20", "--close-wait", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), child.pid());
    let (rss0, fds0) = (common::rss(d.pid()), fd_count(d.pid()));
    let ticks0 = d.status()["ticks_total"].as_u64().unwrap();
    let out = Command::new("wrk")
        .args(["-t2", "-c64", "-d5s", "--timeout", "5s"])
        .arg(format!("http://{}/healthz", d.addr))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk: {text}");
    let total: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("wrk's request count");
    let non_2xx = wrk_count(&text, "Non-2xx or 3xx responses:");
    let socket_errors = text.lines().find(|l| l.contains("Socket errors"));
    let status = d.status();
    let ticks1 = status["ticks_total"].as_u64().unwrap();
    let rss1 = common::rss(d.pid());
    // Connections wrk left are closed by the server's idle timeout.
    assert!(
        common::eventually(|| fd_count(d.pid()) <= fds0 + 1) || {
            std::thread::sleep(HEADER_TIMEOUT);
            fd_count(d.pid()) <= fds0 + 1
        }
    );
    println!(
        "wrk: {total} requests to /healthz in 5 s over 64 connections, {non_2xx} non-2xx, \
         socket errors: {}; {} ticks meanwhile; leakwatch rss {} -> {} KiB, fds {fds0} -> {}",
        socket_errors.unwrap_or("none"),
        ticks1 - ticks0,
        rss0 / 1024,
        rss1 / 1024,
        fd_count(d.pid())
    );
    assert!(total > 1000, "wrk managed only {total} requests: {text}");
    assert_eq!(non_2xx, 0, "{text}");
    assert!(socket_errors.is_none(), "{text}");
    assert!(
        ticks1 >= ticks0 + 10,
        "the target was not polled during the flood"
    );
    assert_eq!(status["targets"][0]["found"], true);
    assert!(rss1 < rss0 + 32 * 1024 * 1024, "rss {rss0} -> {rss1}");
}

/// Lines of the daemon's log that say a `/metrics` body was rendered.
fn renders(d: &Daemon) -> usize {
    let log = d.log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter()
        .filter(|l| l.contains("/metrics rendered"))
        .count()
}

#[test]
fn healthz_answers_during_a_wrk_flood_of_metrics_rendered_once_per_snapshot() {
    if wrk().is_none() {
        return;
    }
    const FLOOD: Duration = Duration::from_secs(10);
    let child = LeakyChild::spawn(&["--files", "20", "--close-wait", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), child.pid());
    let (ticks0, renders0, started) = (
        d.status()["ticks_total"].as_u64().unwrap(),
        renders(&d),
        Instant::now(),
    );
    let url = format!("http://{}/metrics", d.addr);
    let flood = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t2", "-c1000", "--timeout", "10s"])
            .arg(format!("-d{}s", FLOOD.as_secs()))
            .arg(url)
            .output()
    });
    // Let wrk open its connections, then probe on fresh connections while it floods.
    std::thread::sleep(Duration::from_secs(2));
    let mut probes = Vec::new();
    while started.elapsed() < FLOOD - Duration::from_secs(1) {
        probes.push(probe(d.addr));
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = flood.join().unwrap().expect("run wrk");
    let (elapsed, renders1) = (started.elapsed(), renders(&d));
    let ticks1 = d.status()["ticks_total"].as_u64().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk: {text}");
    let total = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("wrk's request count");
    let mut latencies: Vec<Duration> = probes.iter().map(|p| p.1).collect();
    latencies.sort();
    let (ticks, rendered) = (ticks1 - ticks0, renders1 - renders0);
    println!(
        "wrk: {total} scrapes of /metrics in {FLOOD:?} over 1000 connections, {} non-2xx, \
         {ticks} ticks, {rendered} renders; {} fresh /healthz meanwhile, median {:.1?}, \
         worst {:.1?}",
        wrk_count(&text, "Non-2xx or 3xx responses:"),
        probes.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // Answered at all (the client gives up after 5 s); how fast is the benchmark's.
    assert!(
        probes.iter().all(|p| p.0 == 200),
        "a probe failed during the /metrics flood: {probes:?}"
    );
    assert_eq!(wrk_count(&text, "Non-2xx or 3xx responses:"), 0, "{text}");
    // Whatever the pace: a render per snapshot published, and one per second of the flood
    // (the process_* figures' age), never one per scrape.
    let bound = ticks as usize + 2 + elapsed.as_secs() as usize + 1;
    assert!(
        (1..=bound).contains(&rendered),
        "{rendered} renders for {total} scrapes and {ticks} ticks (bound {bound})"
    );
    assert!(
        total > 10 * bound as u64,
        "wrk managed only {total} scrapes: {text}"
    );
}
