//! The rules every request passes before (or instead of) a handler: no request bodies
//! (413), only GET and HEAD (405), unknown paths (404), `Cache-Control: no-store` on every
//! answer, and the bearer token for `/metrics` and `/status` compared in constant time.

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// 413 for any request that carries a body (`Content-Length` above 0, any
/// `Transfer-Encoding`), before routing: no endpoint takes one, and a body is work a
/// client could make the server do.
pub(super) async fn reject_body(req: Request, next: Next) -> Response {
    if has_body(req.headers(), req.body()) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted: every endpoint is GET or HEAD\n",
        )
            .into_response();
    }
    next.run(req).await
}

fn has_body(headers: &HeaderMap, body: &Body) -> bool {
    let declared = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.to_str().map_or(true, |s| s.trim() != "0"));
    declared || headers.contains_key(header::TRANSFER_ENCODING) || body.size_hint().lower() > 0
}

/// Adds `Cache-Control: no-store`: a probe answer or a scrape is only true now.
pub(super) async fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Every method but GET and HEAD on a known path.
pub(super) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "only GET and HEAD are served\n",
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; endpoints: /healthz /healthz/NAME /livez /readyz /metrics /status\n",
    )
        .into_response()
}

/// Any other path on the probe listener.
pub(super) async fn probes_only() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; this is the probe port: /healthz /healthz/NAME /livez /readyz \
         (/metrics and /status are on the main port)\n",
    )
        .into_response()
}

/// `/metrics` and `/status` with a token configured: `Authorization: Bearer <token>`, or
/// 401 with `WWW-Authenticate: Bearer`. No token configured: open.
pub(super) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token() else {
        return next.run(req).await;
    };
    if authorized(req.headers(), &token) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized: this endpoint needs `Authorization: Bearer <token>` \
         (the token in [http] token_file)\n",
    )
        .into_response()
}

/// Whether the request carries `Bearer <token>`. The scheme is case-insensitive (RFC 9110
/// §11.1); an empty configured token matches nothing.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, given)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ")
        && !token.is_empty()
        && constant_time_eq(given.trim_ascii(), token.as_bytes())
}

/// `given == expected`, in a time that depends only on `expected.len()`: every byte of the
/// expected value is compared, with no early return on the first difference nor on a length
/// mismatch (a shorter `given` is padded with zeros, and the length difference is folded
/// into the result).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= g ^ e;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_equal() {
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
    }

    #[test]
    fn constant_time_eq_different() {
        assert!(!constant_time_eq(b"s3cret-tokem", b"s3cret-token"));
        assert!(!constant_time_eq(b"x3cret-token", b"s3cret-token"));
    }

    #[test]
    fn constant_time_eq_different_length() {
        assert!(!constant_time_eq(b"s3cret", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token-and-more", b"s3cret-token"));
        // A prefix padded with the zeros the loop pads with is still not equal.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
    }

    #[test]
    fn constant_time_eq_empty() {
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"", b"token"));
        assert!(!constant_time_eq(b"token", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_the_space() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert!(authorized(&with("Bearer tok"), "tok"));
        assert!(authorized(&with("bearer tok"), "tok"));
        assert!(!authorized(&with("Basic tok"), "tok"));
        assert!(!authorized(&with("Bearertok"), "tok"));
        assert!(!authorized(&with("Bearer "), ""));
        assert!(!authorized(&HeaderMap::new(), "tok"));
    }
}
