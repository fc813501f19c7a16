//! `/proc/PID/stat` and `/proc/PID/task/TID/stat` (proc(5)).
//!
//! The second field, `(comm)`, may itself contain spaces and parentheses (`comm` is any 15
//! bytes the program chose), so the fields after it are found from the *last* `)`.

use std::path::Path;

use crate::error::{read_to_string, ReadError};

/// The fields of `stat` that leakwatch uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    /// Field 20.
    pub num_threads: u64,
    /// Field 22: clock ticks after boot.
    pub starttime_ticks: u64,
}

/// Parse the text of a `stat` file.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let open = text.find('(').ok_or("no '(' before comm")?;
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let pid = text[..open]
        .trim()
        .parse()
        .map_err(|_| format!("bad pid {:?}", text[..open].trim()))?;
    let comm = text[open + 1..close].to_string();
    // Fields from 3 (state) on; index 0 here is field 3.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, String> {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| format!("only {} fields after comm, need field {n}", rest.len()))
    };
    let num = |n: usize| -> Result<u64, String> {
        field(n)?
            .parse()
            .map_err(|_| format!("field {n} is not a number"))
    };
    let state = field(3)?.chars().next().ok_or("empty state")?;
    let ppid = field(4)?
        .parse()
        .map_err(|_| "field 4 (ppid) is not a number".to_string())?;
    Ok(Stat {
        pid,
        comm,
        state,
        ppid,
        num_threads: num(20)?,
        starttime_ticks: num(22)?,
    })
}

/// Read and parse `DIR/stat` (DIR is `/proc/PID` or `/proc/PID/task/TID`).
pub fn read_stat(dir: &Path) -> Result<Stat, ReadError> {
    let path = dir.join("stat");
    let text = read_to_string(&path)?;
    parse_stat(&text).map_err(|msg| ReadError::parse(&path, msg))
}

/// Boot time (`btime` of `/proc/stat`), seconds since the Unix epoch.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_KERNEL_6_18: &str = include_str!("../../tests/fixtures/proc/stat_kernel_6_18");
    const STAT_ODD_COMM: &str = include_str!("../../tests/fixtures/proc/stat_odd_comm");

    #[test]
    fn stat_kernel_6_18() {
        let s = parse_stat(STAT_KERNEL_6_18).unwrap();
        assert_eq!(s.comm, "sleep");
        assert_eq!(s.state, 'S');
        assert!(s.pid > 0 && s.ppid > 0);
        assert_eq!(s.num_threads, 1);
        assert!(s.starttime_ticks > 0);
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        let s = parse_stat(STAT_ODD_COMM).unwrap();
        assert_eq!(s.comm, "a) b (c) d");
        assert_eq!(s.state, 'S');
        assert_eq!(s.num_threads, 1);
    }

    #[test]
    fn truncated_stat_is_an_error_not_a_panic() {
        for cut in 0..STAT_KERNEL_6_18.len() {
            let _ = parse_stat(&STAT_KERNEL_6_18[..cut]);
        }
        assert!(parse_stat("12 (x) S 1").is_err());
        assert!(parse_stat(")(").is_err());
    }

    #[test]
    fn btime() {
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1763788000\nprocesses 5\n"),
            Some(1763788000)
        );
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }
}
