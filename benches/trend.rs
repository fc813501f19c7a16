//! The trend's cost, measured: `judge::trend::trend` (Theil–Sen slope, Mann–Kendall with
//! its tie and autocorrelation corrections) over a full window, the most a series costs
//! per tick. 30 minutes at 1 s (1801 points, thinned to 256) and 10 minutes at 5 s (121
//! points) of a leak under a GC sawtooth. Prints one line per window: µs per call.

use std::hint::black_box;
use std::time::{Duration, Instant};

use leakwatch::judge::{trend, JudgeConfig, Point};

fn window(step_s: u64, minutes: u64) -> Vec<Point> {
    (0..=minutes * 60 / step_s)
        .map(|i| {
            let t = (i * step_s) as f64;
            Point {
                t_ms: i * step_s * 1000,
                value: (1e9 + 320_000.0 * t + 3e8 * (t % 120.0) / 120.0).floor(),
            }
        })
        .collect()
}

fn main() {
    for (step_s, minutes) in [(1, 30), (5, 10)] {
        let points = window(step_s, minutes);
        let judge = JudgeConfig {
            window: Duration::from_secs(minutes * 60),
            ..JudgeConfig::default()
        };
        let calls = 2000;
        let start = Instant::now();
        for _ in 0..calls {
            black_box(trend::trend(black_box(&points), &judge));
        }
        let per_call = start.elapsed() / calls;
        println!(
            "trend over {} points ({minutes} min at {step_s} s): {:.0} µs per call",
            points.len(),
            per_call.as_secs_f64() * 1e6
        );
    }
}
