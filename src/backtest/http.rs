//! A minimal HTTP/1.1 client for Prometheus' API: one `GET` per connection
//! (`Connection: close`), plain `http://` only, the body read to its end (`Content-Length`,
//! chunked, or until the server closes). Blocking, with timeouts: `backtest` is a command,
//! not the daemon. `crate::http::client` speaks raw requests to leakwatch's own endpoints
//! and takes whatever arrives; this one de-chunks and refuses a malformed answer, because
//! Prometheus answers large queries chunked and a truncated matrix must not be judged.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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

/// `GET prefix + path_and_query`.
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
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for sa in sockaddrs {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last))?;
    let io = |source| HttpError::Io {
        addr: addr.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "GET {}{} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: leakwatch/{}\r\nConnection: close\r\n\r\n",
        server.prefix,
        path_and_query,
        server.host_port,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    parse_response(&raw).map_err(|why| HttpError::Malformed { addr, why })
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
}
