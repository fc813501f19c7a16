//! leakwatch's one HTTP/1.1 client: plain `http://`, one request per connection
//! (`Connection: close`), blocking with timeouts (its callers are commands and tests, not
//! the daemon's tick). It imports nothing of leakwatch, so any layer may use it.
//!
//! Two ways to read the answer, over the same connection and the same capped read
//! ([`MAX_ANSWER_BYTES`], 4 × the timeout):
//! - strict, [`get`] and [`send`] + [`parse_response`]: the body de-chunked or cut to its
//!   `Content-Length`, and a malformed, truncated or cut-off answer refused. Prometheus
//!   (`backtest`) answers large queries chunked, and a truncated matrix must not be judged;
//!   `inspect --from` reads a daemon's `/status` the same way.
//! - raw, [`exchange`]: whatever arrives, for `demo` (what `/healthz` really answers) and
//!   the end-to-end tests (through `test_support::http`), which also speak malformed
//!   requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most of an answer that is read: a `/status` of many targets is a few MiB.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: only http://HOST:PORT[/PATH] URLs are supported")]
    BadUrl(String),
    #[error("cannot reach {addr}: {source}")]
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    #[error("reading from {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} sent a malformed HTTP response: {why}")]
    Malformed { addr: String, why: String },
}

/// A server: host:port and the path prefix every request goes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host_port: String,
    pub prefix: String,
}

impl Server {
    /// From `http://HOST[:PORT][/PREFIX]` (port 80 when absent).
    pub fn parse(url: &str) -> Result<Server, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let host_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Server {
            host_port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

/// A response: its status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How a read of the answer ended.
enum End {
    /// The server closed: the answer is whole, as far as the connection can say.
    Closed,
    /// A read failed or timed out.
    Failed(std::io::Error),
    /// [`MAX_ANSWER_BYTES`] arrived.
    TooLong,
    /// The server was still sending after 4 × the timeout.
    TooSlow,
}

/// Connect to `addr`, send `raw` (a whole request) and read the answer until the server
/// closes, a read fails or times out, or the cap is reached.
fn talk(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<(Vec<u8>, End)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let deadline = Instant::now() + timeout * 4;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if bytes.len() >= MAX_ANSWER_BYTES {
            return Ok((bytes, End::TooLong));
        }
        if Instant::now() >= deadline {
            return Ok((bytes, End::TooSlow));
        }
        match s.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok((bytes, End::Failed(e))),
            Ok(0) => return Ok((bytes, End::Closed)),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Send `raw` (a whole request) and read the answer until the server closes: its status code
/// (0 when none arrived) and body, taken as they are. What arrived before a read error or
/// timeout still counts, so an answer followed by a reset is seen; connecting or sending
/// failing is an error. A server that keeps sending is cut off at [`MAX_ANSWER_BYTES`] or
/// after 4 × `timeout`.
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<(u16, String)> {
    let (bytes, _) = talk(addr, raw, timeout)?;
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

/// Send `raw` to `addr` and read the whole answer, unparsed: an error unless the server
/// closed the connection after it (a read that fails or times out, an answer over
/// [`MAX_ANSWER_BYTES`] or still arriving after 4 × `timeout`).
pub fn send(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Result<Vec<u8>, HttpError> {
    let name = addr.to_string();
    let (bytes, end) = talk(addr, raw, timeout).map_err(|source| HttpError::Unreachable {
        addr: name.clone(),
        source,
    })?;
    let io = |source| HttpError::Io {
        addr: name.clone(),
        source,
    };
    match end {
        End::Closed => Ok(bytes),
        End::Failed(e) => Err(io(e)),
        End::TooSlow => Err(io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("still sending after {}s", (timeout * 4).as_secs()),
        ))),
        End::TooLong => Err(HttpError::Malformed {
            addr: name.clone(),
            why: format!("the answer is longer than {} MiB", MAX_ANSWER_BYTES >> 20),
        }),
    }
}

/// `GET prefix + path_and_query` from `server`, strictly: the status and the whole body, or
/// why there is none.
pub fn get(
    server: &Server,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let addr = server.host_port.clone();
    let unreachable = |source| HttpError::Unreachable {
        addr: addr.clone(),
        source,
    };
    let sockaddrs: Vec<_> = addr.to_socket_addrs().map_err(unreachable)?.collect();
    let request = format!(
        "GET {}{} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: leakwatch/{}\r\nConnection: close\r\n\r\n",
        server.prefix,
        path_and_query,
        server.host_port,
        env!("CARGO_PKG_VERSION")
    );
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for sa in sockaddrs {
        // The next address only when this one could not be reached; errors name the server.
        let raw = match send(sa, request.as_bytes(), timeout) {
            Ok(raw) => raw,
            Err(HttpError::Unreachable { source, .. }) => {
                last = source;
                continue;
            }
            Err(HttpError::Io { source, .. }) => return Err(HttpError::Io { addr, source }),
            Err(HttpError::Malformed { why, .. }) => {
                return Err(HttpError::Malformed { addr, why })
            }
            Err(e) => return Err(e),
        };
        return parse_response(&raw).map_err(|why| HttpError::Malformed { addr, why });
    }
    Err(unreachable(last))
}

/// Split a whole HTTP/1.1 response into its status and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of the headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = find(rest, b"\r\n").ok_or("a chunk size line has no end")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("the response ends inside a chunk")?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size + 2..)
            .ok_or("the response ends inside a chunk")?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encode a query parameter's value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn urls_name_a_host_port_and_a_prefix() {
        let s = Server::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            (s.host_port.as_str(), s.prefix.as_str()),
            ("127.0.0.1:9090", "")
        );
        let s = Server::parse("http://prom/base/").unwrap();
        assert_eq!(
            (s.host_port.as_str(), s.prefix.as_str()),
            ("prom:80", "/base")
        );
        let s = Server::parse("http://[::1]:9090/").unwrap();
        assert_eq!(s.host_port, "[::1]:9090");
        assert!(Server::parse("https://prom").is_err());
        assert!(Server::parse("prom:9090").is_err());
    }

    #[test]
    fn chunked_and_sized_bodies_are_read_whole() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcdef"[..]));
        let r = parse_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (400, &b"{}"[..]));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc")
                .is_err()
        );
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a{job=\"x\"} + 1"), "a%7Bjob%3D%22x%22%7D%20%2B%201");
    }

    /// A server that answers one connection with `answer` and closes.
    fn answering(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head);
            let _ = s.write_all(answer);
        });
        addr
    }

    #[test]
    fn the_raw_exchange_takes_a_truncated_body_the_strict_get_refuses_it() {
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let t = Duration::from_secs(5);
        let (code, body) = exchange(answering(CUT), b"GET / HTTP/1.1\r\n\r\n", t).unwrap();
        assert_eq!((code, body.as_str()), (200, "abc"));
        let server = Server::parse(&format!("http://{}", answering(CUT))).unwrap();
        let err = get(&server, "/", t).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "sent a malformed HTTP response: the body is shorter than its Content-Length"
            ),
            "{err}"
        );
        let server = Server::parse(&format!(
            "http://{}/p",
            answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        ))
        .unwrap();
        assert_eq!(get(&server, "/", t).unwrap().body, b"{}");
    }
}
