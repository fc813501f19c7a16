//! The series table: in `Series` order, and `put` and `read` inverse of each other.

use super::table::TABLE;
use super::{put, read};
use crate::judge::{Rule, Series};
use crate::sample::Sample;

#[test]
fn the_table_is_in_series_order_and_names_each_once() {
    for (i, def) in TABLE.iter().enumerate() {
        assert_eq!(def.series as usize, i, "{def:?}");
        assert_eq!(Series::ALL[i], def.series);
        assert_eq!(Series::named(def.name), Some(def.series));
        // The serde name (the config key, /status and recordings) is the table's.
        let json = serde_json::to_string(&def.series).unwrap();
        assert_eq!(json, format!("\"{}\"", def.name));
    }
    assert_eq!(Series::named("nope"), None);
}

/// What the replay puts into a sample, the judge reads out of it: value and natural limit.
#[test]
fn put_then_read_gives_every_series_back() {
    for series in Series::ALL {
        for (value, limit) in [
            (Some(1234.0), Some(4096.0)),
            (Some(0.0), None),
            (None, None),
        ] {
            let mut s = Sample::default();
            put(&mut s, series, value, limit);
            let o = read(&s, series, &Rule::default());
            assert_eq!(o.value, value, "{series}: {o:?}");
            if series.natural_limit() {
                assert_eq!(o.limit, limit, "{series}: {o:?}");
            }
        }
        // 0 is no limit, as in Prometheus' and the recordings' limits.
        let mut s = Sample::default();
        put(&mut s, series, Some(7.0), Some(0.0));
        let o = read(&s, series, &Rule::default());
        assert_eq!((o.value, o.limit), (Some(7.0), None), "{series}");
    }
}

/// Series sharing a section of the sample do not overwrite each other.
#[test]
fn series_of_one_section_keep_each_other() {
    let mut s = Sample::default();
    for (i, series) in Series::ALL.into_iter().enumerate() {
        put(&mut s, series, Some(i as f64 + 1.0), None);
    }
    for (i, series) in Series::ALL.into_iter().enumerate() {
        let o = read(&s, series, &Rule::default());
        assert_eq!(o.value, Some(i as f64 + 1.0), "{series}");
    }
}
