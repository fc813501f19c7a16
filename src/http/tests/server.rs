//! The connection lifetime, which needs a shortened bound to test: a client that sends a
//! request for a large answer and never reads it loses its slot, so under the connection
//! cap the next client (a probe) is still served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::config::HttpConfig;
use crate::http::server::{bind, serve_with, ConnLimits};

/// Reads until the server closes (or resets); `None` if still open after `bound`.
fn read_to_close(s: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let left = left.max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return Some(got),
        }
    }
}

fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(request).expect("write");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_slot() {
    // /status of this snapshot is far larger than the loopback socket buffers.
    let targets = (0..20_000).map(|i| healthy(&format!("target-{i:05}")));
    let st = state(snapshot(targets.collect()), None);
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = HttpConfig {
        token_file: None,
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
    };
    let limits = ConnLimits {
        lifetime: Duration::from_millis(500),
        stall: Duration::from_millis(300),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let server =
        tokio::spawn(async move { serve_with(listener, app(st), &cfg, limits, shutdown).await });

    let _reader_gone = send(addr, b"GET /status HTTP/1.1\r\nHost: lw\r\n\r\n");
    let mut probe = send(
        addr,
        b"GET /livez HTTP/1.1\r\nHost: lw\r\nConnection: close\r\n\r\n",
    );
    let got = read_to_close(&mut probe, Duration::from_secs(8)).expect("the probe is served");
    assert!(got.starts_with(b"HTTP/1.1 200 OK"), "{got:?}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(8), server).await;
}
