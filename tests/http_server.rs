//! `http::serve` on a real socket (127.0.0.1, an ephemeral port), driven by raw TCP writes:
//! clients that stall mid-header are cut at the header timeout and cannot starve a probe:
//! at the connection cap (or a source's cap) a new client takes the slot of the stalest
//! connection at once; the probe listener serves the probes alone; oversized heads get 431;
//! garbage gets 400 or a close, never a hang; shutdown drains idle connections and returns. Every wait is bounded
//! by a generous timeout; no test asserts a tight timing.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leakwatch::config::HttpConfig;
use leakwatch::http::{bind, serve, AppState};
use leakwatch::judge::{Budget, Judged, Verdict};
use leakwatch::sample::Sample;
use leakwatch::snapshot::{ConfigInfo, Snapshot, TargetStatus};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The bound on anything that should happen "soon": generous for a noisy 2-core machine.
const SOON: Duration = Duration::from_secs(5);

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: lw\r\nConnection: close\r\n\r\n";

/// A request line and half a header: the client then stalls.
const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: l";

fn snapshot() -> Snapshot {
    let app = TargetStatus {
        name: "app".into(),
        selector: "pid 1".into(),
        found: true,
        target: None,
        missing_reason: None,
        watching_since_unix_ms: None,
        restarts_total: 0,
        sample: Some(Sample::default()),
        judged: Judged {
            series: Vec::new(),
            rules: Vec::new(),
            budget: Budget::default(),
            verdict: Verdict::healthy(Vec::new()),
        },
        collector_errors_total: Vec::new(),
        poll_duration_seconds: None,
        actions: leakwatch::actions::ActionsStatus::default(),
        mode: leakwatch::judge::Enforcement::Enforce,
        would_fail_flips_total: 0,
    };
    Snapshot {
        version: "test".into(),
        seq: 1,
        started_unix_ms: 0,
        published_unix_ms: 0,
        published_mono_ms: leakwatch::clock::mono_ms(),
        // Long enough that the snapshot stays fresh for the whole test.
        interval_ms: 3_600_000,
        ticks_total: 1,
        ticks_skipped_total: 0,
        tick_duration_us: 0,
        config: ConfigInfo::default(),
        peer_labels: false,
        targets: vec![app],
        fleet: None,
    }
}

struct Server {
    addr: SocketAddr,
    /// The probe listener's address, when started with one.
    probes: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    // Kept so the channels stay open for the server's lifetime.
    _snapshot: watch::Sender<Arc<Snapshot>>,
    _token: watch::Sender<Option<Arc<str>>>,
}

async fn start(max_connections: usize, header_timeout: Duration) -> Server {
    let cfg = HttpConfig {
        token_file: None,
        max_connections,
        header_timeout,
    };
    start_with(cfg, false).await
}

/// A server with `cfg`, and a probe listener if `probes`.
async fn start_with(cfg: HttpConfig, probes: bool) -> Server {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = bind(any).await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let probe_listener = match probes {
        true => Some(bind(any).await.expect("bind the probe listener")),
        false => None,
    };
    let probes = probe_listener.as_ref().map(|l| l.local_addr().unwrap());
    let (snapshot_tx, snapshot) = watch::channel(Arc::new(snapshot()));
    let (token_tx, token) = watch::channel(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState { snapshot, token };
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(listener, probe_listener, state, &cfg, shutdown).await
    });
    Server {
        addr,
        probes,
        stop: Some(stop),
        task,
        _snapshot: snapshot_tx,
        _token: token_tx,
    }
}

/// Connects and writes `bytes`; write errors are returned (a server may close early).
fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> (TcpStream, io::Result<()>) {
    let mut s = TcpStream::connect_timeout(&addr, SOON).expect("connect");
    let written = s.write_all(bytes);
    (s, written)
}

/// Everything the server sends until it closes (a reset counts as a close); `None` if the
/// connection is still open after `bound`.
fn read_to_close(s: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(got),
        }
    }
}

/// `GET /healthz` on a new connection: the status line, or `None` when not answered in time.
fn healthz_status(addr: SocketAddr, bound: Duration) -> Option<String> {
    let (mut s, written) = connect_and_send(addr, GET_HEALTHZ);
    written.expect("write");
    let got = read_to_close(&mut s, bound)?;
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_string)
}

impl Server {
    /// Triggers shutdown and waits (bounded) for `serve` to return.
    async fn stop(mut self, bound: Duration) -> Option<io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(bound, &mut self.task).await.ok()?.ok()
    }
}

fn big_head(header_bytes: usize) -> Vec<u8> {
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: lw\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', header_bytes));
    head.extend_from_slice(b"\r\n\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_head_is_cut_at_the_header_timeout() {
    let srv = start(8, Duration::from_millis(300)).await;
    let (mut s, written) = connect_and_send(srv.addr, HALF_HEAD);
    written.expect("write");
    // Hyper closes without an answer (no 408): the client just sees the close.
    let got = read_to_close(&mut s, SOON).expect("closed within 5 s");
    assert_eq!(String::from_utf8_lossy(&got), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_idle_connection_is_closed_too() {
    let srv = start(8, Duration::from_millis(300)).await;
    let (mut silent, _) = connect_and_send(srv.addr, b"");
    assert!(
        read_to_close(&mut silent, SOON).is_some(),
        "silent client kept"
    );
    // One request per connection: the first of two pipelined requests is answered with
    // `Connection: close`, and the connection closes (no idle keep-alive holds a slot).
    let two = b"GET /livez HTTP/1.1\r\nHost: lw\r\n\r\nGET /livez HTTP/1.1\r\nHost: lw\r\n\r\n";
    let (mut idle, written) = connect_and_send(srv.addr, two);
    written.expect("write");
    let got = read_to_close(&mut idle, SOON).expect("closed after the answer");
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.1 200 ok").count(), 1, "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

/// Regression (a waiting connection spun a core at 100 %): half a request head, then the
/// client's end of stream. The head can never be completed; the connection is closed at
/// once (its socket stays readable for good, so waiting for more bytes would never sleep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_then_end_of_stream_is_closed_not_spun_on() {
    let srv = start(8, Duration::from_secs(60)).await;
    let (mut s, written) = connect_and_send(srv.addr, HALF_HEAD);
    written.expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let got = read_to_close(&mut s, SOON).expect("closed, long before the header timeout");
    assert_eq!(String::from_utf8_lossy(&got), "");
    let status = healthz_status(srv.addr, SOON);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_a_probe() {
    let srv = start(16, Duration::from_secs(4)).await;
    let slow: Vec<TcpStream> = (0..6)
        .map(|_| connect_and_send(srv.addr, HALF_HEAD).0)
        .collect();
    let status = healthz_status(srv.addr, SOON);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_gets_431_from_hyper() {
    let srv = start(8, Duration::from_secs(2)).await;
    let (mut s, _) = connect_and_send(srv.addr, &big_head(64 * 1024));
    let got = read_to_close(&mut s, SOON).expect("closed after the answer");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
    // Just under the cap is still served.
    let (mut s, _) = connect_and_send(srv.addr, &big_head(12 * 1024));
    let got = read_to_close(&mut s, SOON).expect("answered");
    assert!(got.starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_400_and_the_server_keeps_serving() {
    let srv = start(8, Duration::from_millis(500)).await;
    let garbage: [&[u8]; 5] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"\xff\xfe\xfd", // no line end: cut at the header timeout
    ];
    for bytes in garbage {
        let (mut s, _) = connect_and_send(srv.addr, bytes);
        let got = read_to_close(&mut s, SOON).expect("answered or closed, not hung");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{bytes:?}: {text}"
        );
    }
    assert_eq!(
        healthz_status(srv.addr, SOON).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

/// Regression (a probe waited in the accept queue behind slow clients until they timed
/// out, so enough of them failed the kubelet's probe): at the cap, with a header timeout
/// far beyond the test, a new client is served at once; the stalest connection gives way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_new_client_takes_the_slot_of_the_stalest() {
    let srv = start(2, Duration::from_secs(60)).await;
    let (mut oldest, _) = connect_and_send(srv.addr, HALF_HEAD);
    let (mut younger, _) = connect_and_send(srv.addr, HALF_HEAD);
    // Both are the server's before the third arrives (their heads are half read).
    std::thread::sleep(Duration::from_millis(200));
    let status = healthz_status(srv.addr, SOON);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    assert_eq!(
        read_to_close(&mut oldest, SOON),
        Some(Vec::new()),
        "the stalest connection is closed, unanswered"
    );
    assert_eq!(
        read_to_close(&mut younger, Duration::from_millis(300)),
        None,
        "the younger one keeps its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_serves_the_probes_alone() {
    let cfg = HttpConfig {
        token_file: None,
        max_connections: 8,
        header_timeout: Duration::from_secs(5),
    };
    let srv = start_with(cfg, true).await;
    let probes = srv.probes.expect("a probe listener");
    let get = |addr: SocketAddr, path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: lw\r\nConnection: close\r\n\r\n");
        let (mut s, _) = connect_and_send(addr, req.as_bytes());
        String::from_utf8(read_to_close(&mut s, SOON).expect("answered")).unwrap()
    };
    for path in ["/healthz", "/healthz/app", "/livez", "/readyz"] {
        let answer = get(probes, path);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{path}: {answer}");
    }
    for path in ["/metrics", "/status"] {
        let answer = get(probes, path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(answer.contains("main port"), "{path}: {answer}");
        let main = get(srv.addr, path);
        assert!(main.starts_with("HTTP/1.1 200 OK"), "{path}: {main}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns() {
    // A header timeout far beyond the test: only the shutdown can close this connection.
    let srv = start(8, Duration::from_secs(60)).await;
    let addr = srv.addr;
    // Waiting for the rest of its head (answered connections close by themselves).
    let (mut idle, written) = connect_and_send(addr, HALF_HEAD);
    written.expect("write");
    assert_eq!(read_to_close(&mut idle, Duration::from_millis(300)), None);
    // Well under SHUTDOWN_GRACE (5 s): the idle connection is closed, not waited out.
    let result = srv.stop(Duration::from_secs(3)).await;
    assert!(
        matches!(result, Some(Ok(()))),
        "serve did not return in time"
    );
    assert_eq!(read_to_close(&mut idle, SOON), Some(Vec::new()));
    assert!(
        TcpStream::connect_timeout(&addr, SOON).is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn bind_names_the_address_in_use() {
    let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = first.local_addr().expect("addr");
    let err = bind(addr).await.expect_err("the port is taken");
    let msg = format!("{err:#}");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("already in use"), "{msg}");
}
