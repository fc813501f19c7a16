//! The smallest HTTP/1.1 client that can ask leakwatch something: `demo` uses it to show
//! what `/healthz` really answers, `inspect --from` to read a daemon's `/status`, and the
//! end-to-end tests (through `test_support::http`, the `test-support` feature) to speak
//! raw requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most of an answer that is read: a `/status` of many targets is a few MiB.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Send `raw` (a whole request) and read the answer until the server closes: its status code
/// (0 when none arrived) and body. What arrived before a read error or timeout still counts,
/// so an answer followed by a reset is seen; connecting or sending failing is an error. A
/// server that keeps sending is cut off at [`MAX_ANSWER_BYTES`] or after 4 × `timeout`.
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let deadline = Instant::now() + timeout * 4;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while bytes.len() < MAX_ANSWER_BYTES && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, raw.as_bytes(), timeout)
}
