//! The drawing on synthetic histories: the leaky instance of docs/backtest.md (fds +5/min to the
//! limit, replaced after 2h45m), one whose verdict flaps, hostile labels; the time ticks
//! over several spans.

use super::axis::{step_ms, ticks};
use super::legend::ITEMS;
use super::marks::{leads, limit_text, place};
use super::*;
use crate::backtest::{replay, Setup, TargetHistory};

/// 2026-12-05T23:30:00Z, the start of docs/backtest.md's worked example.
const T0: u64 = 1_796_513_400_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
/// The plot's width.
const PLOT: f64 = X1 - LEFT;

/// Five hours at 15 s of one series, its limit, and a process replaced at `restart_s`.
fn history(series: Series, limit: f64, v: impl Fn(u64) -> f64, restart_s: u64) -> TargetHistory {
    let mut h = TargetHistory::default();
    h.labels.insert("job".into(), "api".into());
    let times: Vec<u64> = (0..=5 * 3600 / 15).map(|i| i * 15).collect();
    let at = |s: u64| T0 + s * 1000;
    h.values
        .insert(series, times.iter().map(|&s| (at(s), v(s))).collect());
    h.limits
        .insert(series, times.iter().map(|&s| (at(s), limit)).collect());
    let started = |s: u64| {
        if s >= restart_s {
            T0 / 1000 + restart_s
        } else {
            T0 / 1000 - 3600
        }
    };
    h.starts = times.iter().map(|&s| (at(s), started(s) as f64)).collect();
    h
}

/// docs/backtest.md's leaky instance (`tests/backtest_prometheus.rs`).
fn leaky() -> TargetReport {
    let fds = |s: u64| {
        if s < 9900 {
            (300 + s * 5 / 60).min(1021) as f64
        } else {
            (300 + (s / 15) % 3) as f64
        }
    };
    replay(&history(Series::Fds, 1024.0, fds, 9900), &Setup::default())
}

/// 500 fds, 950 for 5 minutes, 500 again, then +10/min to the limit; replaced at 2h45m.
fn flapping() -> TargetReport {
    let fds = |s: u64| {
        let noise = (s / 15) % 3;
        let v = match s / 60 {
            0..60 => 500 + noise,
            60..65 => 950,
            65..90 => 500 + noise,
            90..165 => (500 + (s - 90 * 60) * 10 / 60).min(1021),
            _ => 300 + noise,
        };
        v as f64
    };
    replay(&history(Series::Fds, 1024.0, fds, 9900), &Setup::default())
}

fn scale(r: &TargetReport) -> Scale {
    Scale {
        t0: r.ticks.first().map_or(0, |t| t.at_ms),
        t1: r.ticks.last().map_or(0, |t| t.at_ms),
    }
}

#[test]
fn the_step_is_round_and_grows_with_the_span() {
    let cases = [
        (45_000, 5_000),
        (3 * HOUR, 15 * MIN),
        (5 * HOUR, 30 * MIN),
        (12 * HOUR, HOUR),
        (24 * HOUR, 2 * HOUR),
        (48 * HOUR, 6 * HOUR),
        (7 * 24 * HOUR, 12 * HOUR),
        (30 * 24 * HOUR, 7 * 24 * HOUR),
    ];
    for (span, step) in cases {
        assert_eq!(step_ms(span, PLOT), step, "span {span} ms");
        assert!(span / step <= 15, "no more than 16 ticks");
    }
    // Past the last step: whole days.
    assert_eq!(step_ms(400 * 24 * HOUR, PLOT) % (24 * HOUR), 0);
}

#[test]
fn ticks_of_a_few_hours_read_hh_mm_with_the_date_where_it_changes() {
    // 23:37:13 to 02:37:13: every 15 minutes from 23:45, the date at 23:45 and midnight.
    let (t0, t1) = (T0 + 7 * MIN + 13_000, T0 + 3 * HOUR + 7 * MIN + 13_000);
    let t = ticks(t0, t1, PLOT);
    let labels: Vec<&str> = t.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(&labels[..4], ["23:45", "00:00", "00:15", "00:30"]);
    assert_eq!(labels.last(), Some(&"02:30"));
    assert_eq!(t.len(), 12);
    assert!(t
        .iter()
        .all(|t| t.at_ms % (15 * MIN) == 0 && (t0..=t1).contains(&t.at_ms)));
    let dates: Vec<(&str, &str)> = t
        .iter()
        .filter_map(|t| Some((t.label.as_str(), t.date.as_deref()?)))
        .collect();
    assert_eq!(dates, [("23:45", "2026-12-05"), ("00:00", "2026-12-06")]);
}

#[test]
fn ticks_of_days_and_of_seconds() {
    // Two days: every 6 hours, dated at each midnight.
    let t = ticks(T0, T0 + 48 * HOUR, PLOT);
    assert_eq!(t[0].label, "00:00");
    assert_eq!(t[0].date.as_deref(), Some("2026-12-06"));
    assert_eq!(t[1].label, "06:00");
    assert_eq!(t[1].date, None);
    assert_eq!(t[4].date.as_deref(), Some("2026-12-07"));
    // A month: a date every 7 days, no second line.
    let t = ticks(T0, T0 + 30 * 24 * HOUR, PLOT);
    assert!(t.iter().all(|t| t.label.len() == 10 && t.date.is_none()));
    assert!(t.len() >= 4 && t.len() <= 5);
    // 45 seconds: every 5 s, with the seconds.
    let t = ticks(T0 + 2_000, T0 + 47_000, PLOT);
    assert_eq!(t[0].label, "23:30:05");
    assert_eq!(t[0].date.as_deref(), Some("2026-12-05"));
    // One instant: one tick there.
    let t = ticks(T0 + 1, T0 + 1, PLOT);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].label, "23:30:00");
}

#[test]
fn the_drawing_has_its_ticks_under_the_last_panel() {
    let svg = render(&leaky());
    // 23:30 to 04:30: every 30 minutes, 11 ticks, a grid line each.
    assert_eq!(svg.matches("class=\"tick\"").count(), 11, "{svg}");
    assert_eq!(svg.matches("class=\"grid\"").count(), 11);
    assert!(svg.contains(">23:30</text>") && svg.contains(">04:30</text>"));
    assert_eq!(svg.matches("class=\"date\"").count(), 2);
    assert!(svg.contains(">2026-12-05</text>") && svg.contains(">2026-12-06</text>"));
}

#[test]
fn the_limit_is_labelled_with_its_value_in_the_series_unit() {
    assert_eq!(limit_text(Series::Fds, 1024.0), "limit 1024");
    assert_eq!(
        limit_text(Series::CgroupMemory, 2.0 * 1024.0 * 1024.0 * 1024.0),
        "limit 2.0 GiB"
    );
    let svg = render(&leaky());
    assert_eq!(svg.matches("class=\"limit-label\"").count(), 1);
    assert!(svg.contains(">limit 1024</text>"), "{svg}");
    let gib = 1024.0 * 1024.0 * 1024.0;
    let memory = history(
        Series::CgroupMemory,
        2.0 * gib,
        |s| gib * (s as f64) / 36_000.0,
        1 << 40,
    );
    let svg = render(&replay(&memory, &Setup::default()));
    assert!(svg.contains(">limit 2.0 GiB</text>"), "{svg}");
}

#[test]
fn the_kubelet_lead_is_marked_from_the_flip_to_the_exhaustion() {
    let r = leaky();
    assert_eq!(r.flips.len(), 1);
    let flip = r.flips[0].at_ms;
    let exhausted = r.exhaustions[0].at_ms;
    assert_eq!(
        flip,
        T0 + 115 * MIN + 30_000,
        "01:25:30, as the README says"
    );
    assert_eq!(exhausted, T0 + 143 * MIN);
    let l = leads(&r, &[Series::Fds]);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].text, "kubelet lead 27m30s");
    assert_eq!((l[0].from_ms, l[0].to_ms), (flip, exhausted));
    assert!(!l[0].cut_short);
    let s = scale(&r);
    let frame = Frame {
        top: 70.0,
        bottom: 220.0,
        max: 1200.0,
    };
    let p = place(&[&l[0]], &s, frame);
    assert_eq!((p[0].x0, p[0].x1), (s.x(flip), s.x(exhausted)));
    assert_eq!(
        p[0].label_x,
        (p[0].x0 + p[0].x1) / 2.0,
        "the label over the bracket"
    );
    assert!(p[0].y > frame.top && p[0].y < frame.bottom);
    let svg = render(&r);
    assert_eq!(svg.matches("<g class=\"lead\">").count(), 1);
    assert!(svg.contains(">kubelet lead 27m30s</text>"));
    let bar = format!("<line x1=\"{:.1}\" y1=", s.x(flip));
    let end = format!("x2=\"{:.1}\"", s.x(exhausted));
    assert!(
        svg.lines().any(|l| l.starts_with(&bar) && l.contains(&end)),
        "a bracket from the flip to the exhaustion: {svg}"
    );
}

#[test]
fn a_lead_cut_short_by_a_200_is_dashed_and_the_kubelet_lead_comes_from_the_last_flip() {
    let r = flapping();
    assert!(r.flapped() && r.flips.len() == 2, "{:?}", r.flips);
    let l = leads(&r, &[Series::Fds]);
    assert_eq!(l.len(), 2);
    assert!(
        l[0].cut_short && l[0].text.ends_with("(503 cut short)"),
        "{l:?}"
    );
    assert!(l[0].text.starts_with("lead "), "{l:?}");
    assert!(l[1].text.starts_with("kubelet lead ") && !l[1].cut_short);
    assert_eq!(l[1].from_ms, r.flips[1].at_ms);
    assert_eq!(l[0].to_ms, l[1].to_ms, "both to the same exhaustion");
    let frame = Frame {
        top: 70.0,
        bottom: 220.0,
        max: 1200.0,
    };
    let p = place(&[&l[0], &l[1]], &scale(&r), frame);
    assert!(p[1].y < p[0].y, "overlapping leads stack upwards: {p:?}");
    let svg = render(&r);
    assert!(svg.contains("the verdict flapped"));
    assert_eq!(svg.matches("stroke-dasharray=\"5 3\"").count(), 1);
}

#[test]
fn the_legend_names_every_mark() {
    let svg = render(&leaky());
    assert_eq!(svg.matches("<g class=\"legend\">").count(), 1);
    for (class, text) in ITEMS {
        assert!(
            svg.contains(&format!("<g class=\"legend-{class}\">")),
            "{class}"
        );
        assert!(svg.contains(&format!(">{text}</text>")), "{text}");
    }
}

#[test]
fn everything_is_inside_the_drawing() {
    for r in [leaky(), flapping()] {
        let svg = render(&r);
        let (w, h) = (f64::from(WIDTH), f64::from(height(&r)));
        for attr in [
            " x=\"", " y=\"", " x1=\"", " x2=\"", " y1=\"", " y2=\"", " cx=\"", " cy=\"",
        ] {
            for v in svg.split(attr).skip(1) {
                let v: f64 = v.split('"').next().unwrap_or("").parse().unwrap_or(-1.0);
                let limit = if attr.contains('x') { w } else { h };
                assert!((0.0..=limit).contains(&v), "{attr}{v} outside {w}x{h}");
            }
        }
    }
}

#[test]
fn the_same_report_gives_the_same_bytes() {
    let a = render(&leaky());
    let b = render(&leaky());
    assert_eq!(a, b);
    let r = flapping();
    assert_eq!(render(&r), render(&r.clone()));
}

#[test]
fn hostile_label_values_are_escaped() {
    let mut h = history(Series::Fds, 1024.0, |_| 300.0, 1 << 40);
    let hostile = "x\"/><script>alert(1)</script><text>&amp;'\u{1}\u{fffe}]]>";
    h.labels.insert("job".into(), hostile.into());
    h.labels.insert("<evil key=\"1\">".into(), "&".into());
    let svg = render(&replay(&h, &Setup::default()));
    assert!(!svg.contains("<script") && !svg.contains("<evil"), "{svg}");
    assert!(
        svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{svg}"
    );
    assert!(!svg.contains('\u{1}') && !svg.contains('\u{fffe}'));
    // Every `&` starts an entity, every `<` starts an element of the drawing's own.
    for rest in svg.split('&').skip(1) {
        assert!(
            ["amp;", "lt;", "gt;", "quot;", "#39;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "a bare & before {:?}",
            rest.get(..10)
        );
    }
    assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    assert_eq!(escape("a\u{1}b\u{1F600}"), "a\u{FFFD}b\u{1F600}");
}

#[test]
fn a_leak_draws_its_series_limit_flip_and_restart() {
    let t0 = 1_800_000_000_000;
    let mut h = TargetHistory::default();
    h.labels.insert("job".into(), "a<b>".into());
    let fds = (0..400)
        .map(|i| {
            (
                t0 + i * 15_000,
                if i < 300 {
                    400.0 + 2.0 * i as f64
                } else {
                    100.0
                },
            )
        })
        .collect();
    h.values.insert(Series::Fds, fds);
    h.limits.insert(Series::Fds, vec![(t0, 1024.0)]);
    h.starts = vec![(t0, 1.0), (t0 + 300 * 15_000, 2.0)];
    let r = replay(&h, &Setup::default());
    assert!(!r.flips.is_empty() && r.restarts.len() == 1);
    let svg = render(&r);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(
        svg.contains("{job=&quot;a&lt;b&gt;&quot;}"),
        "labels escaped"
    );
    assert_eq!(
        svg.matches("class=\"restart\"").count(),
        1,
        "one restart line"
    );
    assert_eq!(svg.matches("class=\"flip\"").count(), r.flips.len());
    // The value and the limit in two runs each, before and after the restart.
    assert_eq!(svg.matches("class=\"value\"").count(), 2);
    assert_eq!(svg.matches("class=\"limit\"").count(), 2);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(file_name(&r), "job=a_b_.svg");
}

#[test]
fn no_samples_is_said_not_drawn() {
    let r = replay(&TargetHistory::default(), &Setup::default());
    let svg = render(&r);
    assert!(svg.contains(">no samples</text>") && svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("class=\"legend\""));
}
