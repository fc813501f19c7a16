//! Reading history from Prometheus' HTTP API: `/api/v1/query_range`, long ranges in chunks
//! under the server's 11,000-points-per-series limit, the matrix checked for its shape.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::Points;
use crate::client::{self as http, HttpError, Server};

/// Points per query: under Prometheus' 11,000.
pub const MAX_POINTS: u64 = 10_000;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A time range and its resolution, unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start_ms: u64,
    pub end_ms: u64,
    pub step_ms: u64,
}

impl Range {
    /// The range cut into queries of at most [`MAX_POINTS`] points each.
    pub fn chunks(&self) -> Vec<Range> {
        let step = self.step_ms.max(1);
        let span = (MAX_POINTS - 1) * step;
        let mut out = Vec::new();
        let mut start = self.start_ms;
        while start <= self.end_ms {
            let end = (start + span).min(self.end_ms);
            out.push(Range {
                start_ms: start,
                end_ms: end,
                step_ms: step,
            });
            start = end + step;
        }
        out
    }
}

/// One series of a matrix: all its labels (with `__name__`) and its points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Points,
}

/// Why a query gave no matrix.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("Prometheus answered {status} to {query}: {message}")]
    Refused {
        status: u16,
        query: String,
        message: String,
    },
    #[error("Prometheus' answer to {query} is not a range-query matrix: {why}")]
    Shape { query: String, why: String },
}

/// Run `query` over `range`, chunk by chunk, and join each series' points.
pub fn query_range(
    server: &Server,
    query: &str,
    range: Range,
) -> Result<Vec<RawSeries>, PromError> {
    let mut joined: BTreeMap<BTreeMap<String, String>, Points> = BTreeMap::new();
    for chunk in range.chunks() {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            http::encode(query),
            seconds(chunk.start_ms),
            seconds(chunk.end_ms),
            seconds(chunk.step_ms)
        );
        let resp = http::get(server, &path, TIMEOUT)?;
        for s in parse_matrix(query, resp.status, &resp.body)? {
            joined.entry(s.labels).or_default().extend(s.points);
        }
    }
    Ok(joined
        .into_iter()
        .map(|(labels, points)| RawSeries { labels, points })
        .collect())
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The matrix of a `query_range` answer, or why it is not one.
pub fn parse_matrix(query: &str, status: u16, body: &[u8]) -> Result<Vec<RawSeries>, PromError> {
    let shape = |why: &str| PromError::Shape {
        query: query.to_string(),
        why: why.to_string(),
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| shape(&format!("not JSON ({e})")))?;
    if v["status"] != "success" {
        let message = v["error"]
            .as_str()
            .unwrap_or("no error message")
            .to_string();
        return Err(PromError::Refused {
            status,
            query: query.to_string(),
            message,
        });
    }
    if v["data"]["resultType"] != "matrix" {
        return Err(shape(&format!(
            "resultType is {}, expected \"matrix\"",
            v["data"]["resultType"]
        )));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| shape("data.result is not an array"))?;
    result
        .iter()
        .map(|s| series(s).map_err(|w| shape(&w)))
        .collect()
}

fn series(s: &Value) -> Result<RawSeries, String> {
    let metric = s["metric"]
        .as_object()
        .ok_or("a series has no \"metric\" object")?;
    let labels = metric
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_str()
                    .ok_or("a label value is not a string")?
                    .to_string(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let values = s["values"]
        .as_array()
        .ok_or("a series has no \"values\" array")?;
    let points = values.iter().map(point).collect::<Result<_, _>>()?;
    Ok(RawSeries { labels, points })
}

/// `[1700000000.5, "42"]` → (ms, value); `"NaN"` and `"+Inf"` parse (and are skipped later).
fn point(p: &Value) -> Result<(u64, f64), String> {
    let bad = || format!("a point is not [time, \"value\"]: {p}");
    let pair = p.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
    let t = pair[0].as_f64().filter(|t| *t >= 0.0).ok_or_else(bad)?;
    let v = pair[1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(bad)?;
    Ok(((t * 1000.0).round() as u64, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ranges_are_cut_under_the_points_limit() {
        let r = Range {
            start_ms: 0,
            end_ms: 3 * 86_400_000,
            step_ms: 15_000,
        };
        let chunks = r.chunks();
        // 17,281 points: two queries.
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].start_ms, 0);
        assert_eq!(chunks[1].start_ms, chunks[0].end_ms + 15_000);
        assert_eq!(chunks[1].end_ms, r.end_ms);
        for c in &chunks {
            assert!(
                (c.end_ms - c.start_ms) / c.step_ms < MAX_POINTS,
                "points: that + 1"
            );
        }
        let one = Range {
            start_ms: 5,
            end_ms: 5,
            step_ms: 15_000,
        };
        assert_eq!(one.chunks(), vec![one]);
    }

    #[test]
    fn a_matrix_parses_and_other_shapes_are_refused() {
        let ok = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"process_open_fds","job":"api"},"values":[[1700000000,"3"],[1700000015.5,"NaN"]]}]}}"#;
        let m = parse_matrix("q", 200, ok).unwrap();
        assert_eq!(m[0].labels["job"], "api");
        assert_eq!(m[0].points[0], (1_700_000_000_000, 3.0));
        assert_eq!(m[0].points[1].0, 1_700_000_015_500);
        assert!(m[0].points[1].1.is_nan());
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let e = parse_matrix("q", 200, vector).unwrap_err().to_string();
        assert!(e.contains("resultType is \"vector\""), "{e}");
        let bad_point = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#;
        assert!(matches!(
            parse_matrix("q", 200, bad_point),
            Err(PromError::Shape { .. })
        ));
        let refused = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = parse_matrix("q", 400, refused).unwrap_err().to_string();
        assert!(e.contains("400") && e.contains("parse error"), "{e}");
        assert!(parse_matrix("q", 200, b"<html>").is_err());
    }
}
