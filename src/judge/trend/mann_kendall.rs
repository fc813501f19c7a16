//! The Mann–Kendall test for a monotonic trend: S counts the pairs that rise minus the pairs
//! that fall, its variance is corrected for ties (whole fds, a flat stretch) and for
//! autocorrelation (Hamed & Rao, 1998), and z = (S ∓ 1) / √var. It is the rank test that goes
//! with the Theil–Sen slope: both look at every pair, neither cares how far a value strays.
//!
//! The autocorrelation correction is what makes it usable on a process's memory: a GC
//! sawtooth or a slow ramp-and-drop is one wave seen through many samples, not many
//! independent draws. Without the correction z grows with the sampling rate (a flat 150 s
//! sawtooth sampled every 5 s reads as z ≈ 5); with it, the variance is inflated by the
//! autocorrelation of the detrended ranks, so denser sampling of the same wave is not more
//! evidence.

use super::Point;

/// The test's result for one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// Rising pairs minus falling pairs.
    pub s: i64,
    /// The standard score of `s` under "no trend", ties and autocorrelation accounted for;
    /// 0 when the series is constant.
    pub z: f64,
}

/// Mann–Kendall over `points` (oldest first), the variance corrected with the ranks of the
/// series detrended by `slope_per_s` (the Theil–Sen slope).
pub fn mann_kendall(points: &[Point], slope_per_s: f64) -> MannKendall {
    let mut s: i64 = 0;
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            s += match b.value.total_cmp(&a.value) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let var = tie_corrected_variance(&values) * autocorrelation_factor(points, slope_per_s);
    let z = if s == 0 || var <= 0.0 || !var.is_finite() {
        0.0
    } else {
        (s - s.signum()) as f64 / var.sqrt()
    };
    MannKendall { s, z }
}

/// Var(S) under "no trend" with ties: (n(n−1)(2n+5) − Σ t(t−1)(2t+5)) / 18 over the groups
/// of `t` equal values.
fn tie_corrected_variance(values: &[f64]) -> f64 {
    let term = |t: f64| t * (t - 1.0) * (2.0 * t + 5.0);
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let ties: f64 = sorted
        .chunk_by(|a, b| a.total_cmp(b).is_eq())
        .map(|g| term(g.len() as f64))
        .sum();
    (term(values.len() as f64) - ties) / 18.0
}

/// Hamed and Rao's n/n*: 1 + 2/(n(n−1)(n−2)) · Σ (n−k)(n−k−1)(n−k−2) ρ(k), over the lags
/// whose autocorrelation ρ(k) of the detrended ranks is significant (|ρ| > 1.96/√n). Never
/// below 1: a series that alternates is not taken as more evidence than independent draws.
fn autocorrelation_factor(points: &[Point], slope_per_s: f64) -> f64 {
    let n = points.len();
    if n < 4 {
        return 1.0;
    }
    let t0 = points[0].t_ms;
    let detrended: Vec<f64> = points
        .iter()
        .map(|p| p.value - slope_per_s * (p.t_ms - t0) as f64 / 1000.0)
        .collect();
    let mean = (n as f64 + 1.0) / 2.0;
    let centred: Vec<f64> = ranks(&detrended).into_iter().map(|r| r - mean).collect();
    let lag0: f64 = centred.iter().map(|c| c * c).sum();
    if lag0 <= 0.0 {
        return 1.0;
    }
    let bound = 1.96 / (n as f64).sqrt();
    let nf = n as f64;
    let mut sum = 0.0;
    for k in 1..n - 2 {
        let rho = centred
            .iter()
            .zip(&centred[k..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / lag0;
        if rho.abs() > bound {
            let m = (n - k) as f64;
            sum += m * (m - 1.0) * (m - 2.0) * rho;
        }
    }
    let factor = 1.0 + 2.0 * sum / (nf * (nf - 1.0) * (nf - 2.0));
    if factor.is_finite() {
        factor.max(1.0)
    } else {
        1.0
    }
}

/// Ranks from 1, ties sharing the mean of their ranks. Values within a billionth of the
/// range of each other tie: residuals that are equal in exact arithmetic (a staircase
/// around its line) must rank the same whatever the units and their rounding.
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_unstable_by(|a, b| xs[*a].total_cmp(&xs[*b]));
    let (Some(first), Some(last)) = (order.first(), order.last()) else {
        return Vec::new();
    };
    let tolerance = (xs[*last] - xs[*first]) * 1e-9;
    let mut ranks = vec![0.0; xs.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && xs[order[end + 1]] - xs[order[end]] <= tolerance {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        for i in &order[start..=end] {
            ranks[*i] = rank;
        }
        start = end + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                t_ms: i as u64 * 1000,
                value: *v,
            })
            .collect()
    }

    #[test]
    fn ranks_share_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(ranks(&[5.0, 5.0, 5.0]), vec![2.0, 2.0, 2.0]);
        // Equal but for rounding.
        assert_eq!(ranks(&[0.1 + 0.2, 0.3, 9.0]), vec![1.5, 1.5, 3.0]);
        assert_eq!(ranks(&[]), Vec::<f64>::new());
    }

    #[test]
    fn the_variance_without_and_with_ties_is_the_textbook_one() {
        // n = 10: 10·9·25/18 = 125.
        let distinct: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(tie_corrected_variance(&distinct), 125.0);
        // One group of 3 equal values takes 3·2·11/18 off.
        let mut tied = distinct.clone();
        tied[1] = 0.0;
        tied[2] = 0.0;
        assert!((tie_corrected_variance(&tied) - (125.0 - 66.0 / 18.0)).abs() < 1e-9);
        assert_eq!(tie_corrected_variance(&[7.0; 12]), 0.0);
    }

    #[test]
    fn s_and_z_of_small_series() {
        // Strictly rising, n = 6: S = 15, Var = 6·5·17/18, z = 14/√28.33 = 2.63.
        let mk = mann_kendall(&points(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 1.0);
        assert_eq!(mk.s, 15);
        assert!(
            (mk.z - 14.0 / (510.0f64 / 18.0).sqrt()).abs() < 1e-9,
            "{mk:?}"
        );
        // Falling is the mirror image.
        let mk = mann_kendall(&points(&[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]), -1.0);
        assert_eq!(mk.s, -15);
        assert!(mk.z < -2.6);
        // Constant: no evidence at all, and no division by a zero variance.
        let mk = mann_kendall(&points(&[4.0; 40]), 0.0);
        assert_eq!((mk.s, mk.z), (0, 0.0));
        assert_eq!(mann_kendall(&points(&[1.0]), 0.0).z, 0.0);
    }

    #[test]
    fn ties_lower_the_variance_so_a_staircase_is_still_a_trend() {
        // Whole fds, +1 every 6 samples: most pairs tie, the rising ones still count.
        let stairs: Vec<f64> = (0..60).map(|i| f64::from(i / 6)).collect();
        let mk = mann_kendall(&points(&stairs), 1.0 / 6.0);
        assert_eq!(mk.s, 60 * 59 / 2 - 10 * 15);
        assert!(mk.z > 8.0, "{mk:?}");
    }

    #[test]
    fn autocorrelation_widens_the_variance_of_a_wave() {
        // One 40-sample ramp and its drop, sampled finely: without the correction this reads
        // as a strong trend; the detrended ranks are one slow wave and the factor is large.
        let wave: Vec<f64> = (0..60).map(|i| f64::from(i % 40)).collect();
        let p = points(&wave);
        assert!(autocorrelation_factor(&p, 0.0) > 3.0);
        // Independent-looking values (a fixed shuffle) are left alone.
        let shuffled: Vec<f64> = (0..60).map(|i| f64::from((i * 37) % 60)).collect();
        assert!(autocorrelation_factor(&points(&shuffled), 0.0) < 1.5);
        // A straight line detrends to a constant: nothing to correct.
        let line: Vec<f64> = (0..60).map(f64::from).collect();
        assert_eq!(autocorrelation_factor(&points(&line), 1.0), 1.0);
    }
}
