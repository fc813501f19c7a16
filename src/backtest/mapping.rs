//! Which Prometheus series feed which judged series, and how they group into targets.
//!
//! Per judged series, candidates in order, the first whose value matches anything wins
//! ([`candidates`]): leakwatch's own metrics first (named in the series table), then the
//! client libraries' process collector and the kubelet's cAdvisor. `--query SERIES=PROMQL`
//! (`SERIES_limit=PROMQL`) replaces the value (the limit). One target per label set, after dropping `__name__`,
//! the per-metric labels `kind`/`state`, and cAdvisor's per-container-instance `id`,
//! `name` and `image` (a restarted container gets new ones); a limit or a start time joins
//! the target with equal labels, else the one target whose shared labels agree.

use std::collections::BTreeMap;

use super::prometheus::{self, PromError, Range, RawSeries};
use super::{Points, TargetHistory};
use crate::client::Server;
use crate::judge::Series;

/// One way to read a series: a metric (with a fixed matcher) and its limit's.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub series: Series,
    pub value: (&'static str, &'static str),
    pub limit: Option<(&'static str, &'static str)>,
}

const fn c(
    series: Series,
    value: (&'static str, &'static str),
    limit: Option<(&'static str, &'static str)>,
) -> Candidate {
    Candidate {
        series,
        value,
        limit,
    }
}

/// The other exporters' candidates: the client libraries' process collector and the
/// kubelet's cAdvisor.
const FOREIGN: &[Candidate] = &[
    c(
        Series::Fds,
        ("process_open_fds", ""),
        Some(("process_max_fds", "")),
    ),
    c(
        Series::CgroupMemory,
        ("container_memory_working_set_bytes", ""),
        Some(("container_spec_memory_limit_bytes", "")),
    ),
    c(Series::Rss, ("process_resident_memory_bytes", ""), None),
];

/// `series`' candidates, in the order tried (docs/backtest.md's table): leakwatch's own
/// metric (named in the series table), then the other exporters'.
pub fn candidates(series: Series) -> Vec<Candidate> {
    let def = series.def();
    let own = def.metric.map(|value| c(series, value, def.limit_metric));
    own.into_iter()
        .chain(FOREIGN.iter().filter(|c| c.series == series).copied())
        .collect()
}

/// Start times (a change is a restart).
pub const STARTS: &[&str] = &["process_start_time_seconds", "container_start_time_seconds"];
/// Restart counts (a rise is a restart).
pub const RESTART_COUNTS: &[&str] = &["leakwatch_target_restarts_total"];

/// Labels that are not the target's identity.
const DROPPED: &[&str] = &["__name__", "kind", "state"];
/// cAdvisor's labels of one container instance.
const CONTAINER_INSTANCE: &[&str] = &["id", "name", "image"];

/// Why the command line's selector or queries are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("selector {0:?}: expected label matchers in braces, e.g. {{job=\"api\"}}")]
    Selector(String),
    #[error("--query {0:?}: expected SERIES=PROMQL or SERIES_limit=PROMQL, SERIES one of {1}")]
    Query(String, String),
    #[error(transparent)]
    Prometheus(#[from] PromError),
    #[error("nothing matched {selector} between the start and the end; queries tried:\n  {tried}")]
    NothingMatched { selector: String, tried: String },
}

/// `--query` overrides: per series, the value's and the limit's PromQL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub values: BTreeMap<Series, String>,
    pub limits: BTreeMap<Series, String>,
}

impl Overrides {
    /// Add one `SERIES=PROMQL` or `SERIES_limit=PROMQL`.
    pub fn add(&mut self, arg: &str) -> Result<(), MappingError> {
        let names = Series::ALL.map(|s| s.as_str()).join(", ");
        let bad = || MappingError::Query(arg.to_string(), names.clone());
        let (name, promql) = arg.split_once('=').ok_or_else(bad)?;
        let (name, limit) = match name.trim().strip_suffix("_limit") {
            Some(n) => (n, true),
            None => (name.trim(), false),
        };
        let series = Series::named(name).ok_or_else(bad)?;
        if promql.trim().is_empty() {
            return Err(bad());
        }
        let map = if limit {
            &mut self.limits
        } else {
            &mut self.values
        };
        map.insert(series, promql.trim().to_string());
        Ok(())
    }
}

/// The inside of `{...}`, checked for its braces.
pub fn selector_matchers(selector: &str) -> Result<String, MappingError> {
    let s = selector.trim();
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .filter(|inner| !inner.contains(['{', '}']))
        .map(|inner| inner.trim().trim_end_matches(',').to_string())
        .ok_or_else(|| MappingError::Selector(selector.to_string()))
}

/// `metric{fixed,matchers}`.
pub fn selected(metric: &str, fixed: &str, matchers: &str) -> String {
    let parts: Vec<&str> = [fixed, matchers]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    format!("{metric}{{{}}}", parts.join(","))
}

/// `query` without the points of ticks that did not read the value: leakwatch exports the
/// heap estimate between its smaps reads too, with `leakwatch_sample_age_seconds` above 0,
/// and the live judge adds a point to its window only on a tick that read it. Where the
/// age is not exported (an older leakwatch, another exporter) every point stays.
fn read_this_tick(series: Series, query: String, matchers: &str) -> String {
    if series != Series::Heap {
        return query;
    }
    let age = selected("leakwatch_sample_age_seconds", "source=\"heap\"", matchers);
    format!("{query} unless ignoring(kind, source) ({age} > 0)")
}

/// What was read, per role, before grouping.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub values: Vec<(Series, RawSeries)>,
    pub limits: Vec<(Series, RawSeries)>,
    pub starts: Vec<RawSeries>,
    pub restart_counts: Vec<RawSeries>,
    /// `series <- query: N series`, for the report's header.
    pub used: Vec<String>,
}

/// Runs queries over one range, and remembers which it ran (for "nothing matched").
struct Reader<'a> {
    server: &'a Server,
    range: Range,
    tried: Vec<String>,
}

impl Reader<'_> {
    fn run(&mut self, query: &str) -> Result<Vec<RawSeries>, MappingError> {
        self.tried.push(query.to_string());
        Ok(prometheus::query_range(self.server, query, self.range)?)
    }

    /// The first of `queries` that matches anything, and what it matched.
    fn first(
        &mut self,
        queries: &[String],
    ) -> Result<Option<(usize, Vec<RawSeries>)>, MappingError> {
        for (i, q) in queries.iter().enumerate() {
            let r = self.run(q)?;
            if !r.is_empty() {
                return Ok(Some((i, r)));
            }
        }
        Ok(None)
    }
}

/// Read one judged series (its value and its limit) into `out`.
fn fetch_series(
    reader: &mut Reader,
    series: Series,
    matchers: &str,
    overrides: &Overrides,
    out: &mut Fetched,
) -> Result<(), MappingError> {
    let candidates = candidates(series);
    let value_queries: Vec<String> = match overrides.values.get(&series) {
        Some(q) => vec![q.clone()],
        None => candidates
            .iter()
            .map(|c| read_this_tick(series, selected(c.value.0, c.value.1, matchers), matchers))
            .collect(),
    };
    let Some((chosen, values)) = reader.first(&value_queries)? else {
        return Ok(());
    };
    out.used.push(format!(
        "{series} <- {}: {} series",
        value_queries[chosen],
        values.len()
    ));
    out.values.extend(values.into_iter().map(|s| (series, s)));
    let limit_of = |c: &Candidate| c.limit.map(|l| selected(l.0, l.1, matchers));
    let limit_queries: Vec<String> = match overrides.limits.get(&series) {
        Some(q) => vec![q.clone()],
        // The chosen candidate's own limit; after an override, the first that matches.
        None if overrides.values.contains_key(&series) => {
            candidates.iter().filter_map(limit_of).collect()
        }
        None => candidates
            .get(chosen)
            .and_then(limit_of)
            .into_iter()
            .collect(),
    };
    if let Some((i, limits)) = reader.first(&limit_queries)? {
        out.used.push(format!(
            "{series} limit <- {}: {} series",
            limit_queries[i],
            limits.len()
        ));
        out.limits.extend(limits.into_iter().map(|s| (series, s)));
    }
    Ok(())
}

/// Read every series the mapping names from `server`.
pub fn fetch(
    server: &Server,
    selector: &str,
    overrides: &Overrides,
    range: Range,
) -> Result<Fetched, MappingError> {
    let matchers = selector_matchers(selector)?;
    let mut reader = Reader {
        server,
        range,
        tried: Vec::new(),
    };
    let mut out = Fetched::default();
    for series in Series::ALL {
        fetch_series(&mut reader, series, &matchers, overrides, &mut out)?;
    }
    if out.values.is_empty() {
        return Err(MappingError::NothingMatched {
            selector: selector.to_string(),
            tried: reader.tried.join("\n  "),
        });
    }
    for m in STARTS {
        out.starts.extend(reader.run(&selected(m, "", &matchers))?);
    }
    for m in RESTART_COUNTS {
        out.restart_counts
            .extend(reader.run(&selected(m, "", &matchers))?);
    }
    Ok(out)
}

/// A series' identity as a target: its labels less those that are not.
pub fn target_key(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let cadvisor = labels
        .get("__name__")
        .is_some_and(|n| n.starts_with("container_"));
    labels
        .iter()
        .filter(|(k, _)| !DROPPED.contains(&k.as_str()))
        .filter(|(k, _)| !(cadvisor && CONTAINER_INSTANCE.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether both sides share a label and every label both have agrees.
fn compatible(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.keys().any(|k| b.contains_key(k)) && a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

/// The target an auxiliary series (a limit, a start time) belongs to: the one with equal
/// labels, else the only one whose shared labels agree.
fn owner(targets: &[TargetHistory], key: &BTreeMap<String, String>) -> Option<usize> {
    if let Some(i) = targets.iter().position(|t| &t.labels == key) {
        return Some(i);
    }
    let mut fits = targets
        .iter()
        .enumerate()
        .filter(|(_, t)| compatible(&t.labels, key));
    match (fits.next(), fits.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// Merge points into a series, in time order, one point per time (the later one).
fn merge(into: &mut Points, points: Points) {
    into.extend(points);
    into.sort_by_key(|p| p.0);
    into.reverse();
    into.dedup_by_key(|p| p.0);
    into.reverse();
}

/// Group what was read into targets; the second part says what could not be placed.
pub fn group(fetched: Fetched) -> (Vec<TargetHistory>, Vec<String>) {
    let mut targets: Vec<TargetHistory> = Vec::new();
    for (series, raw) in fetched.values {
        let key = target_key(&raw.labels);
        let i = match targets.iter().position(|t| t.labels == key) {
            Some(i) => i,
            None => {
                targets.push(TargetHistory {
                    labels: key,
                    ..TargetHistory::default()
                });
                targets.len() - 1
            }
        };
        merge(targets[i].values.entry(series).or_default(), raw.points);
    }
    let mut unplaced = Vec::new();
    let mut place = |raw: RawSeries,
                     what: &str,
                     put: &mut dyn FnMut(&mut TargetHistory, Points)| {
        match owner(&targets, &target_key(&raw.labels)) {
            Some(i) => put(&mut targets[i], raw.points),
            None => unplaced.push(format!("{what} {:?} joins no one target", raw.labels)),
        }
    };
    for (series, raw) in fetched.limits {
        place(raw, "limit", &mut |t, p| {
            merge(t.limits.entry(series).or_default(), p)
        });
    }
    for raw in fetched.starts {
        place(raw, "start time", &mut |t, p| merge(&mut t.starts, p));
    }
    for raw in fetched.restart_counts {
        place(raw, "restart count", &mut |t, p| {
            merge(&mut t.restart_counts, p)
        });
    }
    (targets, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(labels: &[(&str, &str)], t: u64, v: f64) -> RawSeries {
        RawSeries {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: vec![(t, v)],
        }
    }

    #[test]
    fn selectors_and_queries_are_checked() {
        assert_eq!(selector_matchers("{job=\"api\"}").unwrap(), "job=\"api\"");
        assert_eq!(
            selected("m", "kind=\"max\"", "job=\"api\""),
            "m{kind=\"max\",job=\"api\"}"
        );
        assert_eq!(selected("m", "", ""), "m{}");
        assert!(selector_matchers("job=\"api\"").is_err());
        let mut o = Overrides::default();
        o.add("fds=sum(x)").unwrap();
        o.add("fds_limit=y").unwrap();
        assert_eq!(
            (
                o.values[&Series::Fds].as_str(),
                o.limits[&Series::Fds].as_str()
            ),
            ("sum(x)", "y")
        );
        assert!(o.add("fd=x").is_err());
        assert!(o.add("fds").is_err());
        assert!(o.add("fds= ").is_err());
    }

    #[test]
    fn series_group_per_label_set_and_limits_join_them() {
        let a = [
            ("__name__", "process_open_fds"),
            ("job", "api"),
            ("instance", "a"),
        ];
        let b = [
            ("__name__", "process_open_fds"),
            ("job", "api"),
            ("instance", "b"),
        ];
        let ws = [
            ("__name__", "container_memory_working_set_bytes"),
            ("pod", "p"),
            ("container", "c"),
            ("id", "/old"),
        ];
        let ws_new = [
            ("__name__", "container_memory_working_set_bytes"),
            ("pod", "p"),
            ("container", "c"),
            ("id", "/new"),
        ];
        let fetched = Fetched {
            values: vec![
                (Series::Fds, raw(&a, 1, 10.0)),
                (Series::Fds, raw(&b, 1, 20.0)),
                (Series::CgroupMemory, raw(&ws, 1, 5.0)),
                (Series::CgroupMemory, raw(&ws_new, 2, 6.0)),
            ],
            limits: vec![
                (
                    Series::Fds,
                    raw(&[("job", "api"), ("instance", "a")], 1, 1024.0),
                ),
                // Fewer labels, but only one target agrees: it joins that one.
                (Series::CgroupMemory, raw(&[("pod", "p")], 1, 0.0)),
                // Matches both fds targets: ambiguous, not placed.
                (Series::Fds, raw(&[("job", "api")], 1, 4096.0)),
            ],
            starts: vec![raw(&[("job", "api"), ("instance", "b")], 1, 1e9)],
            ..Fetched::default()
        };
        let (targets, unplaced) = group(fetched);
        assert_eq!(targets.len(), 3);
        let find = |k: &str, v: &str| {
            targets
                .iter()
                .find(|t| t.labels.get(k).map(String::as_str) == Some(v))
                .unwrap()
        };
        assert_eq!(
            find("instance", "a").limits[&Series::Fds],
            vec![(1, 1024.0)]
        );
        assert!(find("instance", "a").starts.is_empty());
        assert_eq!(find("instance", "b").starts, vec![(1, 1e9)]);
        // The restarted container's new id is the same target.
        let pod = find("pod", "p");
        assert_eq!(pod.values[&Series::CgroupMemory], vec![(1, 5.0), (2, 6.0)]);
        assert!(!pod.labels.contains_key("id"));
        assert_eq!(pod.limits[&Series::CgroupMemory], vec![(1, 0.0)]);
        assert_eq!(unplaced.len(), 1, "{unplaced:?}");
    }
}
