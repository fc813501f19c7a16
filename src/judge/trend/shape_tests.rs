//! The trust statistic on the shapes production series take, window by window over an hour
//! of history at the two cadences leakwatch is run at (5 s, and 15 s as Prometheus scrapes),
//! and its properties on random series.

use proptest::prelude::*;

use super::*;

const MIB: f64 = 1_048_576.0;

/// `minutes` of `f(t_s)` sampled every `step_s`.
fn history(step_s: u64, minutes: u64, f: impl Fn(f64) -> f64) -> Vec<Point> {
    (0..=minutes * 60 / step_s)
        .map(|i| Point {
            t_ms: i * step_s * 1000,
            value: f((i * step_s) as f64).floor(),
        })
        .collect()
}

/// The trend of every full 10-minute window of `points` (the judge's default), and of the
/// windows still filling from `min_span` on when `filling`.
fn windows(points: &[Point], filling: bool) -> Vec<(f64, Trend)> {
    windows_with(points, &JudgeConfig::default(), filling)
}

/// [`windows`] judged by `judge`.
fn windows_with(points: &[Point], judge: &JudgeConfig, filling: bool) -> Vec<(f64, Trend)> {
    let window_ms = judge.window.as_millis() as u64;
    let from_ms = if filling {
        judge.min_span.as_millis() as u64
    } else {
        window_ms
    };
    (0..points.len())
        .filter(|end| points[*end].t_ms >= from_ms)
        .map(|end| {
            let now = points[end].t_ms;
            let start = points.partition_point(|p| p.t_ms < now.saturating_sub(window_ms));
            let t = trend(&points[start..=end], judge).expect("a trend");
            (now as f64 / 60_000.0, t)
        })
        .collect()
}

/// A sawtooth: 0 at each period's start, climbing evenly to `height`, then dropping.
fn tooth(t_s: f64, period_s: f64, height: f64) -> f64 {
    height * (t_s % period_s) / period_s
}

#[test]
fn a_leak_under_a_sawtooth_larger_than_the_window_s_growth_is_trusted() {
    // 19 MiB/min (190 MiB a window) under a 300 MiB two-minute GC sawtooth.
    for step in [5, 15] {
        let points = history(step, 60, |t| {
            GIB + 19.0 * MIB * t / 60.0 + tooth(t, 120.0, 300.0 * MIB)
        });
        for (min, t) in windows(&points, false) {
            assert!(t.trusted, "{step} s, minute {min}: {t:?}");
            let mib_per_min = t.slope_per_s * 60.0 / MIB;
            // The teeth bias the median slope up to half as much again.
            assert!((15.0..=30.0).contains(&mib_per_min), "{step} s: {t:?}");
        }
    }
}

const GIB: f64 = 1024.0 * MIB;

#[test]
fn a_sawtooth_without_a_trend_is_never_trusted() {
    // A two-minute GC sawtooth, and a slow one whose ramp fills most of the window.
    for (period_s, height) in [
        (120.0, 300.0 * MIB),
        (480.0, 300.0 * MIB),
        (150.0, 390.0 * MIB),
    ] {
        for step in [5, 15] {
            let points = history(step, 60, |t| GIB + tooth(t, period_s, height));
            for (min, t) in windows(&points, false) {
                assert!(!t.trusted, "{period_s} s at {step} s, minute {min}: {t:?}");
            }
        }
    }
}

#[test]
fn a_slow_ramp_is_a_leak_until_it_drops() {
    // The first minutes of a slow sawtooth are one straight ramp: no statistic tells them
    // from a leak. With a `min_span` of half the window they are trusted from 5 minutes;
    // once a full window holds the drop they are not. The default `min_span` is the whole
    // window, so a window that is still filling is never trusted.
    let points = history(15, 30, |t| GIB + tooth(t, 480.0, 300.0 * MIB));
    let half = JudgeConfig {
        min_span: std::time::Duration::from_secs(300),
        ..JudgeConfig::default()
    };
    let trusted = |judge: &JudgeConfig| -> Vec<f64> {
        windows_with(&points, judge, true)
            .into_iter()
            .filter(|(_, t)| t.trusted)
            .map(|(min, _)| min)
            .collect()
    };
    let early = trusted(&half);
    assert_eq!(early.first(), Some(&5.0));
    assert!(early.iter().all(|m| *m < 10.0), "{early:?}");
    assert_eq!(trusted(&JudgeConfig::default()), Vec::<f64>::new());
}

#[test]
fn a_whole_number_step_leak_slower_than_half_per_minute_is_trusted() {
    // fds: +1 every 3 minutes (0.33/min), and +1 every minute; the neighbours are equal
    // for minutes at a time.
    for every_s in [180.0, 60.0] {
        for step in [5, 15] {
            let points = history(step, 60, |t| 600.0 + (t / every_s).floor());
            for (min, t) in windows(&points, false) {
                assert!(t.trusted, "+1/{every_s} s at {step} s, minute {min}: {t:?}");
                let per_min = t.slope_per_s * 60.0;
                assert!((per_min - 60.0 / every_s).abs() < 0.05, "{t:?}");
            }
        }
    }
}

#[test]
fn a_counter_reset_is_not_a_leak() {
    // +2/min from 800, then down to 5 at minute 30, climbing +1/min again.
    let points = history(5, 60, |t| {
        if t < 1800.0 {
            800.0 + t / 30.0
        } else {
            5.0 + (t - 1800.0) / 60.0
        }
    });
    for (min, t) in windows(&points, false) {
        // From the fall until it is in the window's oldest quarter.
        if (30.0..37.5).contains(&min) {
            assert!(!t.trusted, "minute {min}: {t:?}");
        }
    }
}

#[test]
fn a_leak_that_pauses_is_not_a_reset() {
    // +2 every 5 s tick, standing still for 3 ticks every 2 minutes (no traffic, or the
    // leaking process not scheduled): every pause leaves the line below, and nothing fell.
    let points = history(5, 60, |t| {
        let ticks = t / 5.0;
        let paused = (ticks / 24.0).floor() * 3.0 + (ticks % 24.0 - 21.0).clamp(0.0, 3.0);
        100.0 + 2.0 * (ticks - paused)
    });
    for (min, t) in windows(&points, false) {
        assert!(t.trusted, "minute {min}: {t:?}");
    }
    // The check's case: a perfect staircase that stalls once, late in a short window.
    let mut staircase: Vec<f64> = (0..14).map(|i| 2.0 * f64::from(i)).collect();
    staircase.extend([26.0, 26.0, 26.0, 28.0, 30.0, 32.0]);
    let points: Vec<Point> = staircase
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            t_ms: i as u64 * 100,
            value: *v,
        })
        .collect();
    let judge = JudgeConfig {
        min_samples: 8,
        min_span: std::time::Duration::from_secs(1),
        ..JudgeConfig::default()
    };
    let t = trend(&points, &judge).unwrap();
    assert!(t.trusted, "{t:?}");
}

#[test]
fn a_single_spike_or_a_flat_series_is_no_trend() {
    for step in [5, 15] {
        let points = history(step, 30, |t| if t == 900.0 { 1000.0 } else { 600.0 });
        for (min, t) in windows(&points, false) {
            assert!(!t.trusted, "minute {min}: {t:?}");
            assert_eq!(t.slope_per_s, 0.0);
        }
    }
    let flat = history(5, 10, |_| 42.0);
    let t = trend(&flat, &JudgeConfig::default()).unwrap();
    assert_eq!((t.mann_kendall_z, t.trusted), (0.0, false));
    assert_eq!(t.untrusted_because.as_deref(), Some("not rising"));
}

#[test]
fn few_minutely_reads_need_a_sixth_to_be_significant() {
    // The heap, from smaps every minute: 5 rising reads are z 2.20, 6 are z 2.63 (with a
    // 4-minute min_span, so that 5 reads are enough to be judged).
    let judge = JudgeConfig {
        min_span: std::time::Duration::from_secs(240),
        ..JudgeConfig::default()
    };
    let reads = |minutes| history(60, minutes, |t| 1e6 + t);
    let t = trend(&reads(4), &judge).unwrap();
    assert_eq!(t.samples, 5);
    assert_eq!(
        t.untrusted_because.as_deref(),
        Some("Mann-Kendall z 2.20 < 2.58")
    );
    assert!(trend(&reads(5), &judge).unwrap().trusted);
}

/// A series at `step_ms` from `start` by `increments`, for the properties below.
fn from_increments(step_ms: u64, start: f64, increments: &[f64]) -> Vec<Point> {
    let mut value = start;
    increments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            value += d;
            Point {
                t_ms: i as u64 * step_ms,
                value,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Strictly rising over a whole window (one tick short of 10 minutes is full) or more,
    /// by steps that vary up to tenfold: trusted.
    #[test]
    fn strictly_rising_is_trusted(steps in prop::collection::vec(1u32..=10, 120..=240)) {
        let inc: Vec<f64> = steps.iter().map(|s| f64::from(*s)).collect();
        let t = trend(&from_increments(5000, 100.0, &inc), &JudgeConfig::default()).unwrap();
        prop_assert!(t.trusted, "{:?}", t);
    }

    /// Never falling over a whole window, standing still for up to 3 ticks at a time
    /// between rises of 1 to 10: trusted (a pause is not a reset).
    #[test]
    fn rising_with_pauses_is_trusted(
        steps in prop::collection::vec((1u32..=10, 0usize..=3), 40..=80),
    ) {
        let inc: Vec<f64> = steps
            .iter()
            .flat_map(|(s, pause)| std::iter::once(f64::from(*s)).chain(std::iter::repeat_n(0.0, *pause)))
            .collect();
        let points = from_increments(5000, 100.0, &inc);
        let t = trend(&points, &JudgeConfig::default()).unwrap();
        prop_assert!(t.trusted || t.span_s < 595.0, "{:?}", t);
    }

    /// A constant series, whatever its value and cadence: never trusted, z 0.
    #[test]
    fn constant_is_never_trusted(
        v in 0u64..=u64::MAX / 2,
        n in 3usize..=300,
        step in 1000u64..=60_000,
    ) {
        let points = from_increments(step, v as f64, &vec![0.0; n]);
        let t = trend(&points, &JudgeConfig::default()).unwrap();
        prop_assert!(!t.trusted);
        prop_assert_eq!(t.mann_kendall_z, 0.0);
    }

    /// A positive affine change of units (bytes to KiB plus an offset) keeps the verdict and
    /// z; negating the series negates z.
    #[test]
    fn units_do_not_change_the_verdict(
        values in prop::collection::vec(0u32..=2000, 61..=150),
        scale in 1u32..=4096,
        offset in 0u32..=1_000_000,
    ) {
        let judge = JudgeConfig::default();
        let points = |f: &dyn Fn(f64) -> f64| -> Vec<Point> {
            values.iter().enumerate().map(|(i, v)| Point {
                t_ms: i as u64 * 5000,
                value: f(f64::from(*v)),
            }).collect()
        };
        let a = trend(&points(&|v| v), &judge).unwrap();
        let b = trend(&points(&|v| v * f64::from(scale) + f64::from(offset)), &judge).unwrap();
        prop_assert_eq!(a.trusted, b.trusted);
        prop_assert!((a.mann_kendall_z - b.mann_kendall_z).abs() < 1e-9, "{:?} {:?}", a, b);
        let c = trend(&points(&|v| -v), &judge).unwrap();
        prop_assert!((a.mann_kendall_z + c.mann_kendall_z).abs() < 1e-9, "{:?} {:?}", a, c);
    }

    /// Noise around a flat level (0..=6 on 800, any seed): a run of it can pass z 2.58 by
    /// chance, but the line through any window climbs less than the noise's own range, so
    /// no projection from it reaches a limit the noise does not.
    #[test]
    fn noise_never_makes_a_steep_trend(seed in 1u64..u64::MAX) {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 7) as f64
        };
        let points: Vec<Point> = (0..240u64)
            .map(|i| Point { t_ms: i * 5000, value: 800.0 + next() })
            .collect();
        for (min, t) in windows(&points, false) {
            prop_assert!(t.slope_per_s.abs() * 600.0 < 6.0, "minute {}: {:?}", min, t);
        }
    }
}
