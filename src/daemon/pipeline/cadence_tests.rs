//! A value read at its own cadence (the heap, from smaps every `smaps_every`), through
//! the tick on a fixture /proc tree: between reads the published sample keeps the last
//! value read of the same process with its age, which the judge takes no point from; a
//! new process starts empty; a read that fails leaves the value unknown until the next.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::tests_support::{pipeline_with, write_pid};
use super::Pipeline;
use crate::collect::{CollectOptions, Collector};
use crate::error::UnknownKind;
use crate::judge::{Rule, Series, SeriesStatus};
use crate::sample::{Source, TargetId};
use crate::snapshot::TargetStatus;
use crate::test_support::FakeProc;

const KIB: u64 = 1024;

/// The fixture's heap estimate with `heap_kib` of `[heap]`.
fn estimate(heap_kib: u64) -> u64 {
    (heap_kib + 3136) * KIB
}

fn smaps(root: &Path, heap_kib: u64) {
    FakeProc::new(root).pid(4242).smaps(heap_kib);
}

/// pid 4242 with an smaps, watched with `smaps_every` far longer than the test: only a
/// new process's first tick reads it, and the ones [`read_next_tick`] asks for.
fn watched(root: &Path) -> Pipeline {
    write_pid(root, 'S', 1000);
    smaps(root, 80);
    // A rule on the heap, so that it is judged (far over what the fixture holds).
    let mut p = pipeline_with(root, |t| {
        let rule = Rule {
            max: Some(1e12),
            ..Rule::default()
        };
        t.rules = vec![(Series::Heap, rule)];
    });
    p.config.smaps_every = Duration::from_secs(3600);
    p
}

/// As if `smaps_every` had gone by.
fn read_next_tick(p: &mut Pipeline) {
    p.targets[0].last_smaps_mono_ms = None;
}

fn tick(p: &mut Pipeline) -> TargetStatus {
    std::thread::sleep(Duration::from_millis(5));
    p.tick().remove(0)
}

/// The heap estimate the sample publishes, and its age.
fn heap(t: &TargetStatus) -> Option<(u64, u64)> {
    let h = t.sample.as_ref()?.heap.as_ref()?;
    Some((h.estimate_bytes, h.age_ms))
}

fn heap_kind(t: &TargetStatus) -> Option<UnknownKind> {
    let s = t.sample.as_ref()?;
    s.unknown.get(&Source::Heap).map(|u| u.kind)
}

fn judged_heap(t: &TargetStatus) -> &SeriesStatus {
    t.judged
        .series
        .iter()
        .find(|s| s.series == Series::Heap)
        .expect("the heap has a rule")
}

#[test]
fn between_smaps_reads_the_heap_is_the_last_read_with_a_growing_age() {
    let root = tempfile::tempdir().unwrap();
    let mut p = watched(root.path());
    let mut reads = Vec::new();
    for i in 0..8 {
        if i == 3 || i == 6 {
            read_next_tick(&mut p);
        }
        let t = tick(&mut p);
        let read = i == 0 || i == 3 || i == 6;
        let (value, age) = heap(&t).unwrap_or_else(|| panic!("tick {i}: no heap"));
        let j = judged_heap(&t);
        if read {
            assert_eq!((value, age), (estimate(80 + i), 0), "tick {i}");
            assert_eq!(heap_kind(&t), None, "tick {i}");
            assert_eq!(j.value, Some(value as f64), "tick {i}");
            reads.push(age);
        } else {
            // The last read, of the same process; its age grows with every tick.
            let last = i / 3 * 3;
            assert_eq!(value, estimate(80 + last), "tick {i}");
            assert!(age >= 5 * (i - last), "tick {i}: age {age} ms");
            assert!(age > reads.last().copied().unwrap_or(0), "tick {i}: {age}");
            reads.push(age);
            assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected), "tick {i}");
            // The judge sees no value, as before: held, not judged again.
            assert!(j.not_collected && j.value.is_none(), "tick {i}: {j:?}");
        }
        let notes = &t.verdict().notes;
        assert!(
            !notes.iter().any(|n| n.contains("heap")),
            "tick {i}: {notes:?}"
        );
        // The smaps the next read will find; the ticks between do not read it.
        smaps(root.path(), 80 + i + 1);
    }
    // Only the three reads are points of the window, not the eight ticks.
    let trend = judged_heap(&p.tick().remove(0)).trend.clone();
    assert_eq!(trend.map(|t| t.samples), Some(3));
}

#[test]
fn a_new_process_does_not_inherit_the_heap_of_the_one_before() {
    let root = tempfile::tempdir().unwrap();
    let mut p = watched(root.path());
    assert_eq!(heap(&tick(&mut p)), Some((estimate(80), 0)));
    assert!(heap(&tick(&mut p)).is_some_and(|(v, age)| v == estimate(80) && age > 0));
    // pid reuse, and the new process's smaps cannot be read (no such file).
    write_pid(root.path(), 'S', 2000);
    fs::remove_file(root.path().join("4242/smaps")).unwrap();
    let t = tick(&mut p);
    assert_eq!(t.restarts_total, 1);
    assert_eq!(heap(&t), None);
    assert_eq!(heap_kind(&t), Some(UnknownKind::Missing));
    let t = tick(&mut p);
    assert_eq!(heap(&t), None, "nothing read of this process yet");
    assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected));

    // The collector itself keeps nothing across processes on the same pid.
    let mut c = Collector::new(root.path(), root.path().join("no-cgroup"));
    let old = TargetId {
        pid: 4242,
        starttime_ticks: 2000,
    };
    smaps(root.path(), 100);
    let opts = CollectOptions::default();
    assert_eq!(
        c.collect(old, &opts).heap.map(|h| h.estimate_bytes),
        Some(estimate(100))
    );
    write_pid(root.path(), 'S', 3000);
    let new = TargetId {
        pid: 4242,
        starttime_ticks: 3000,
    };
    let skip = CollectOptions {
        smaps: false,
        ..CollectOptions::default()
    };
    let s = c.collect(new, &skip);
    assert_eq!(s.heap, None);
    assert_eq!(
        s.unknown.get(&Source::Heap).map(|u| u.kind),
        Some(UnknownKind::NotCollected)
    );
}

#[test]
fn a_read_that_fails_leaves_the_heap_unknown_until_the_next_read() {
    let root = tempfile::tempdir().unwrap();
    let mut p = watched(root.path());
    assert_eq!(heap(&tick(&mut p)), Some((estimate(80), 0)));
    // smaps is a directory now: reading it fails (EISDIR), an error, not a cadence skip.
    let path = root.path().join("4242/smaps");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    read_next_tick(&mut p);
    let t = tick(&mut p);
    assert_eq!(heap(&t), None, "unknown, not the last value");
    assert_eq!(heap_kind(&t), Some(UnknownKind::Io));
    let j = judged_heap(&t);
    assert!(!j.not_collected && j.unknown.is_some(), "{j:?}");
    // The ticks until the next read carry nothing from before the error.
    let t = tick(&mut p);
    assert_eq!(heap(&t), None);
    assert_eq!(heap_kind(&t), Some(UnknownKind::NotCollected));
    // Readable again: read at its cadence, and kept after.
    fs::remove_dir(&path).unwrap();
    smaps(root.path(), 90);
    read_next_tick(&mut p);
    assert_eq!(heap(&tick(&mut p)), Some((estimate(90), 0)));
    assert!(heap(&tick(&mut p)).is_some_and(|(v, age)| v == estimate(90) && age > 0));
}
