//! The smallest HTTP/1.1 client that can ask leakwatch something: `demo` uses it to show
//! what `/healthz` really answers, and the end-to-end tests (through
//! `test_support::http`, the `test-support` feature) use it to speak raw requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Send `raw` (a whole request) and read the answer until the server closes: its status code
/// (0 when none arrived) and body. What arrived before a read error or timeout still counts,
/// so an answer followed by a reset is seen; connecting or sending failing is an error.
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
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
