//! `/proc/PID/limits` (proc(5)): the soft and hard `Max open files`.
//!
//! A fixed-width table; the limit names contain spaces, so a row is matched by its name
//! prefix and the two values after it are taken as whitespace-separated words.

use std::path::Path;

use crate::error::{read_to_string, ReadError};
use crate::sample::{FdLimit, Limit};

fn parse_limit(word: &str) -> Option<Limit> {
    if word == "unlimited" {
        Some(Limit::Unlimited)
    } else {
        word.parse().ok().map(Limit::Limited)
    }
}

/// Parse the `Max open files` row of a `limits` file.
pub fn parse_nofile(text: &str) -> Result<FdLimit, String> {
    let row = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or("no 'Max open files' row")?;
    let mut words = row.split_whitespace();
    let mut next = |which: &str| {
        words
            .next()
            .and_then(parse_limit)
            .ok_or_else(|| format!("'Max open files' has no valid {which} limit"))
    };
    let soft = next("soft")?;
    let hard = next("hard")?;
    Ok(FdLimit { soft, hard })
}

/// Read and parse `PROC/PID/limits`.
pub fn read_nofile(pid_dir: &Path) -> Result<FdLimit, ReadError> {
    let path = pid_dir.join("limits");
    parse_nofile(&read_to_string(&path)?).map_err(|m| ReadError::parse(&path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/limits_kernel_6_18");

    #[test]
    fn limits_kernel_6_18() {
        let l = parse_nofile(LIMITS_KERNEL_6_18).unwrap();
        assert_eq!(l.soft, Limit::Limited(20000));
        assert_eq!(l.hard, Limit::Limited(20000));
    }

    #[test]
    fn unlimited_and_missing() {
        let text = LIMITS_KERNEL_6_18.replace(
            "Max open files            20000                20000",
            "Max open files            1024                 unlimited",
        );
        let l = parse_nofile(&text).unwrap();
        assert_eq!(l.soft, Limit::Limited(1024));
        assert_eq!(l.hard, Limit::Unlimited);
        assert!(parse_nofile("Limit Soft Hard\n").is_err());
        assert!(parse_nofile("Max open files  12\n").is_err());
        assert!(parse_nofile("Max open files  x y\n").is_err());
    }
}
