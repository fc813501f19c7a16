//! A fresh [`Registry`] per render, filled from one snapshot: no global state, so a removed
//! target's series disappear with it. Failures (a bad label count, an encoding error) are
//! logged and skip only the sample or family concerned; rendering never panics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{CounterVec, GaugeVec, Opts, Registry, TextEncoder};

use super::families::{Family, Kind, ALL};
use crate::fleet::status::Latency;

/// The families of one render, keyed by name.
pub struct Out {
    registry: Registry,
    gauges: HashMap<&'static str, GaugeVec>,
    counters: HashMap<&'static str, CounterVec>,
    histograms: HashMap<&'static str, Histograms>,
}

impl Out {
    /// A registry with every family of [`ALL`] declared (and no samples yet).
    pub fn new() -> Out {
        let mut out = Out {
            registry: Registry::new(),
            gauges: HashMap::new(),
            counters: HashMap::new(),
            histograms: HashMap::new(),
        };
        for family in ALL {
            if let Err(e) = out.declare(family) {
                tracing::warn!(metric = family.name, error = %e, "metric family not exported");
            }
        }
        out
    }

    fn declare(&mut self, f: &'static Family) -> prometheus::Result<()> {
        let opts = Opts::new(f.name, f.help);
        match f.kind {
            Kind::Gauge => {
                let vec = GaugeVec::new(opts, f.labels)?;
                self.registry.register(Box::new(vec.clone()))?;
                self.gauges.insert(f.name, vec);
            }
            Kind::Counter => {
                let vec = CounterVec::new(opts, f.labels)?;
                self.registry.register(Box::new(vec.clone()))?;
                self.counters.insert(f.name, vec);
            }
            Kind::Histogram => {
                let h = Histograms::new(f)?;
                self.registry.register(Box::new(h.clone()))?;
                self.histograms.insert(f.name, h);
            }
        }
        Ok(())
    }

    /// One histogram from kept totals: cumulative counts per upper bound, their sum and
    /// count.
    pub fn put_histogram(&self, f: &Family, labels: &[&str], h: &Latency) {
        match self.histograms.get(f.name) {
            Some(hs) if labels.len() == f.labels.len() => hs.put(labels, h),
            _ => tracing::warn!(metric = f.name, ?labels, "histogram not exported"),
        }
    }

    /// Add another collector (leakwatch's own process metrics).
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::warn!(error = %e, "collector not exported");
        }
    }

    /// One sample: a gauge is set to `value`, a counter (fresh, at 0) is raised by it. A
    /// value that is not a finite number (or a negative counter) is left out: it is unknown.
    pub fn put(&self, f: &Family, labels: &[&str], value: f64) {
        if !value.is_finite() || (f.kind == Kind::Counter && value < 0.0) {
            tracing::debug!(
                metric = f.name,
                value,
                "not a finite number (or a negative counter): left out"
            );
            return;
        }
        let res = match f.kind {
            Kind::Gauge => self.gauge(f, labels).map(|g| g.set(value)),
            Kind::Counter => self.counter(f, labels).map(|c| c.inc_by(value)),
            Kind::Histogram => Err(prometheus::Error::Msg(
                "a histogram takes put_histogram".into(),
            )),
        };
        if let Err(e) = res {
            tracing::warn!(metric = f.name, ?labels, error = %e, "sample not exported");
        }
    }

    /// [`Out::put`] for a count or a byte size; `None` (unknown) exports nothing.
    pub fn put_u64(&self, f: &Family, labels: &[&str], value: Option<u64>) {
        if let Some(v) = value {
            self.put(f, labels, v as f64);
        }
    }

    fn gauge(&self, f: &Family, labels: &[&str]) -> prometheus::Result<prometheus::Gauge> {
        let vec = self.gauges.get(f.name).ok_or_else(|| undeclared(f))?;
        vec.get_metric_with_label_values(labels)
    }

    fn counter(&self, f: &Family, labels: &[&str]) -> prometheus::Result<prometheus::Counter> {
        let vec = self.counters.get(f.name).ok_or_else(|| undeclared(f))?;
        vec.get_metric_with_label_values(labels)
    }

    /// The text format of everything put. A family that fails to encode is logged and left
    /// out; the others are still returned.
    pub fn encode(&self) -> String {
        let encoder = TextEncoder::new();
        let mut text = String::new();
        for family in self.registry.gather() {
            encode_family(&encoder, &family, &mut text);
        }
        text
    }
}

fn encode_family(encoder: &TextEncoder, family: &MetricFamily, text: &mut String) {
    let mut one = String::new();
    match encoder.encode_utf8(std::slice::from_ref(family), &mut one) {
        Ok(()) => text.push_str(&one),
        Err(e) => tracing::warn!(metric = family.name(), error = %e, "metric family not encoded"),
    }
}

fn undeclared(f: &Family) -> prometheus::Error {
    prometheus::Error::Msg(format!("{} was not declared", f.name))
}

/// One histogram series: its label values and its buckets.
type LabelledLatency = (Vec<String>, Latency);

/// A histogram family whose buckets come from totals kept elsewhere (the prometheus crate's
/// own histogram only takes observations).
#[derive(Clone)]
struct Histograms {
    desc: prometheus::core::Desc,
    series: Arc<Mutex<Vec<LabelledLatency>>>,
}

impl Histograms {
    fn new(f: &Family) -> prometheus::Result<Histograms> {
        let labels = f.labels.iter().map(|l| l.to_string()).collect();
        Ok(Histograms {
            desc: prometheus::core::Desc::new(
                f.name.into(),
                f.help.into(),
                labels,
                HashMap::new(),
            )?,
            series: Arc::default(),
        })
    }

    fn put(&self, labels: &[&str], h: &Latency) {
        if let Ok(mut s) = self.series.lock() {
            s.push((labels.iter().map(|l| l.to_string()).collect(), h.clone()));
        }
    }
}

impl Collector for Histograms {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.series.lock().map(|s| s.clone()).unwrap_or_default();
        if series.is_empty() {
            return Vec::new();
        }
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        let metrics = series
            .into_iter()
            .map(|(values, h)| {
                let pairs = self
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut p = LabelPair::default();
                        p.set_name(name.clone());
                        p.set_value(value);
                        p
                    })
                    .collect();
                let mut m = Metric::from_label(pairs);
                let mut proto = Histogram::default();
                proto.set_sample_count(h.count);
                proto.set_sample_sum(h.sum_s);
                proto.set_bucket(
                    h.buckets
                        .iter()
                        .map(|(le, n)| {
                            let mut b = Bucket::default();
                            b.set_upper_bound(*le);
                            b.set_cumulative_count(*n);
                            b
                        })
                        .collect(),
                );
                m.set_histogram(proto);
                m
            })
            .collect();
        family.set_metric(metrics);
        vec![family]
    }
}
