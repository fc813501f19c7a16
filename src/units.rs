//! Human formatting of bytes and durations for `inspect` and logs.

/// `1536` -> `1.5 KiB`; exact bytes below 1 KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `93_000` ms -> `1m33s`; `1_500` ms -> `1.5s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        return if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{s:.1}s")
        };
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m}m{s:02}s"),
        (0, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// `part / whole` as a percentage with one decimal, or `None` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(duration_ms(1500), "1.5s");
        assert_eq!(duration_ms(2000), "2s");
        assert_eq!(duration_ms(93_000), "1m33s");
        assert_eq!(duration_ms(3_723_000), "1h02m");
        assert_eq!(duration_ms(90_000_000), "1d01h");
        assert_eq!(
            percent(1001, 1024).map(|p| (p * 10.0).round() / 10.0),
            Some(97.8)
        );
        assert_eq!(percent(1, 0), None);
    }
}
