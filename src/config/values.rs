//! Value types of the config file that check themselves while the TOML is read, so a bad
//! value is reported at its own line and column: durations (`"5s"`), ratios, quantities
//! (`1024`, `"2GiB"`), rates (`"10/min"`, `"5MiB/min"`) and regexes.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as `"5s"`, `"2m"`, `"1h30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "expected a duration like \"5s\", \"2m\" or \"1h30m\", got {s:?} ({e})"
                ))
            })
    }
}

/// A share of a limit, in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v > 0.0 && v <= 1.0 {
            Ok(Ratio(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a ratio above 0 and at most 1 (0.9 = 90%), got {v}"
            )))
        }
    }
}

/// A count or a size: `200`, `1.5`, `"512MiB"`, `"2Gi"`, `"1G"` (SI), never negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity(pub f64);

/// Parse `"512MiB"`, `"2Gi"`, `"1.5G"`, `"100"`: binary suffixes (Ki Mi Gi Ti, with or
/// without B) are powers of 1024, SI suffixes (k K M G T, with or without B) powers of 1000.
pub fn parse_quantity(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("expected a number with an optional unit, got {s:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "K" | "kB" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "T" | "TB" => 1e12,
        "Ki" | "KiB" => 1024.0,
        "Mi" | "MiB" => 1024.0 * 1024.0,
        "Gi" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Ti" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (use KiB, MiB, GiB, or K, M, G)"
            ))
        }
    };
    let value = num * mult;
    if !value.is_finite() {
        return Err(format!("{s:?} is too large a number"));
    }
    Ok(value)
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::Int(i) => i as f64,
            Raw::Float(f) => f,
            Raw::Text(s) => parse_quantity(&s).map_err(serde::de::Error::custom)?,
        };
        if v.is_finite() && v >= 0.0 {
            Ok(Quantity(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a number of at least 0, got {v}"
            )))
        }
    }
}

/// A growth rate, stored per second: `"10/min"`, `"5MiB/min"`, `"119KB/s"`, `"1/h"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let (q, per) = s
        .split_once('/')
        .ok_or_else(|| format!("expected a rate like \"10/min\" or \"5MiB/min\", got {s:?}"))?;
    let amount = parse_quantity(q)?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        "d" | "day" => 86400.0,
        u => return Err(format!("unknown time unit {u:?} in {s:?} (use s, min, h)")),
    };
    if amount <= 0.0 {
        return Err(format!("a growth rate must be above 0, got {s:?}"));
    }
    Ok(Rate {
        per_second: amount / seconds,
    })
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("200"), Ok(200.0));
        assert_eq!(parse_quantity("2GiB"), Ok(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("512Mi"), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1.5G"), Ok(1.5e9));
        assert!(parse_quantity("12 parsecs").is_err());
        assert!(parse_quantity("").is_err());
        assert!(parse_quantity("-5").is_err());
    }

    /// Found by `tests/trust_proptest.rs`: 309 digits or more parse as an infinite f64,
    /// which made `"1000…0/min"` a growth rate of infinity (a threshold never reached)
    /// instead of an error.
    #[test]
    fn a_number_too_long_for_an_f64_is_refused_not_infinite() {
        let huge = format!("1{}", "0".repeat(400));
        assert!(parse_quantity(&huge).is_err());
        assert!(parse_quantity(&format!("{huge}GiB")).is_err());
        assert!(parse_rate(&format!("{huge}/min")).is_err());
        // The largest finite ones still parse.
        let big = format!("1{}", "0".repeat(300));
        assert_eq!(parse_quantity(&big), Ok(1e300));
        assert!(parse_quantity(&format!("{}Ti", "9".repeat(298))).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/min").unwrap().per_second, 10.0 / 60.0);
        assert_eq!(parse_rate("119KB/s").unwrap().per_second, 119_000.0);
        assert_eq!(
            parse_rate("5MiB/min").unwrap().per_second,
            5.0 * 1024.0 * 1024.0 / 60.0
        );
        assert_eq!(parse_rate("1/h").unwrap().per_second, 1.0 / 3600.0);
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("10/fortnight").is_err());
        assert!(parse_rate("0/min").is_err());
    }
}
