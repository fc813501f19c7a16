//! Writing a bundle: files in a temp directory beside the final one, each cut at a line to
//! keep the whole under `max_bytes` (with a note saying what was left out), then one
//! `rename(2)` so a half-written bundle is never seen under a bundle's name; then the
//! target's oldest bundles beyond `keep` are removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::units;

/// One file of the bundle, as lines.
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub name: String,
    pub lines: Vec<String>,
}

/// Bytes held back for `README.txt`, which is written last and lists what was cut.
const README_RESERVE: u64 = 8 * 1024;

/// Room for the note that ends a cut file.
const NOTE_RESERVE: u64 = 256;

/// A bundle directory name: `<target>-20261122T071502.123Z`.
pub fn bundle_name(target: &str, unix_ms: u64) -> String {
    // units::utc gives `2026-11-22 07:15:02 UTC`.
    let civil: String = units::utc(unix_ms)
        .trim_end_matches(" UTC")
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == ' ')
        .map(|c| if c == ' ' { 'T' } else { c })
        .collect();
    format!("{target}-{civil}.{:03}Z", unix_ms % 1000)
}

/// Whether `dir_name` is one of `target`'s bundles (and not another target's whose name
/// starts the same, nor a temp dir).
pub fn is_bundle_of(dir_name: &str, target: &str) -> bool {
    let Some(rest) = dir_name
        .strip_prefix(target)
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    let stamp = rest.split('-').next().unwrap_or("");
    let b = stamp.as_bytes();
    b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z'
}

/// Say what went wrong with the bundle directory the way an operator would look for it.
pub fn describe(dir: &Path, e: &std::io::Error) -> String {
    let d = dir.display();
    match e.raw_os_error() {
        Some(libc::EROFS) => format!("bundle dir {d} is read-only"),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!("bundle dir {d} is full ({e})"),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("bundle dir {d} is not writable: permission denied")
        }
        Some(libc::ENOTDIR) => format!("bundle dir {d}: a part of the path is not a directory"),
        _ => format!("bundle dir {d}: {e}"),
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    /// `fds.txt: 2873 of 3012 lines left out`, one per cut file.
    pub truncated: Vec<String>,
    /// Older bundles removed by retention.
    pub removed: Vec<PathBuf>,
}

/// Write `files` (README last, given as a function of the truncation notes) as the bundle
/// `name` under `dir`, capped at `max_bytes`; keep the newest `keep` bundles of `target`.
pub fn write_bundle(
    dir: &Path,
    target: &str,
    name: &str,
    files: &[BundleFile],
    readme: impl FnOnce(&[String]) -> Vec<String>,
    max_bytes: u64,
    keep: u32,
) -> Result<Written, String> {
    std::fs::create_dir_all(dir).map_err(|e| describe(dir, &e))?;
    let (final_path, tmp) = free_name(dir, name);
    std::fs::create_dir(&tmp).map_err(|e| describe(dir, &e))?;
    let result = fill(&tmp, files, readme, max_bytes).and_then(|(bytes, truncated)| {
        std::fs::rename(&tmp, &final_path).map_err(|e| describe(dir, &e))?;
        Ok((bytes, truncated))
    });
    let (bytes, truncated) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let removed = retain(dir, target, keep);
    Ok(Written {
        path: final_path,
        bytes,
        truncated,
        removed,
    })
}

/// `DIR/name` (or `name-2`, ... when taken) and its temp dir `DIR/.tmp-name`.
fn free_name(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            name.to_string()
        } else {
            format!("{name}-{n}")
        };
        let path = dir.join(&candidate);
        let tmp = dir.join(format!(".tmp-{candidate}"));
        if !path.exists() && !tmp.exists() {
            return (path, tmp);
        }
        n += 1;
    }
}

fn fill(
    tmp: &Path,
    files: &[BundleFile],
    readme: impl FnOnce(&[String]) -> Vec<String>,
    max_bytes: u64,
) -> Result<(u64, Vec<String>), String> {
    let mut left = max_bytes.saturating_sub(README_RESERVE);
    let mut written = 0u64;
    let mut truncated = Vec::new();
    for f in files {
        let (text, cut) = capped(&f.lines, left, max_bytes);
        if let Some(cut) = cut {
            truncated.push(format!("{}: {cut}", f.name));
        }
        put(tmp, &f.name, &text)?;
        left = left.saturating_sub(text.len() as u64);
        written += text.len() as u64;
    }
    let (text, _) = capped(&readme(&truncated), README_RESERVE, max_bytes);
    put(tmp, "README.txt", &text)?;
    Ok((written + text.len() as u64, truncated))
}

/// The lines that fit in `room` bytes; when not all do, a last line says how many were left
/// out, and the returned note says the same.
fn capped(lines: &[String], room: u64, max_bytes: u64) -> (String, Option<String>) {
    let total: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    if total <= room {
        let mut s = lines.join("\n");
        s.push('\n');
        return (s, None);
    }
    let mut s = String::new();
    let budget = room.saturating_sub(NOTE_RESERVE);
    let mut kept = 0;
    for l in lines {
        if (s.len() + l.len() + 1) as u64 > budget {
            break;
        }
        s.push_str(l);
        s.push('\n');
        kept += 1;
    }
    let note = format!(
        "{} of {} lines left out to keep the bundle under max_bytes = {}",
        lines.len() - kept,
        lines.len(),
        units::bytes(max_bytes)
    );
    s.push_str(&format!("[truncated: {note}]\n"));
    (s, Some(note))
}

fn put(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    let parent = dir.parent().unwrap_or(dir);
    let mut f = std::fs::File::create(&path).map_err(|e| describe(parent, &e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| describe(parent, &e))
}

/// Remove `target`'s bundles beyond the newest `keep`, and its temp dirs left by a crash
/// (older than an hour). Failures only mean more is kept.
fn retain(dir: &Path, target: &str, keep: u32) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut bundles = Vec::new();
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_bundle_of(&name, target) {
            bundles.push(name);
        } else if name
            .strip_prefix(".tmp-")
            .is_some_and(|n| is_bundle_of(n, target))
        {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    bundles.sort();
    let excess = bundles.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for name in &bundles[..excess] {
        let p = dir.join(name);
        if std::fs::remove_dir_all(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, n: usize) -> BundleFile {
        BundleFile {
            name: name.into(),
            lines: (0..n)
                .map(|i| format!("line {i:05} {}", "x".repeat(40)))
                .collect(),
        }
    }

    #[test]
    fn names_sort_by_time_and_belong_to_their_target() {
        let a = bundle_name("app", 1_795_324_382_123);
        assert_eq!(a, "app-20261122T051302.123Z");
        assert!(is_bundle_of(&a, "app"));
        assert!(is_bundle_of(&format!("{a}-2"), "app"));
        assert!(!is_bundle_of(&a, "ap"));
        assert!(!is_bundle_of("app-2-20261122T051302.123Z", "app"));
        assert!(!is_bundle_of(&format!(".tmp-{a}"), "app"));
        assert!(bundle_name("app", 1_795_324_382_123) < bundle_name("app", 1_795_324_390_000));
    }

    #[test]
    fn a_bundle_is_whole_capped_and_the_oldest_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundles");
        let files = vec![file("small.txt", 10), file("fds.txt", 5000)];
        let mut paths = Vec::new();
        for i in 0..4u64 {
            let name = bundle_name("app", 1_795_324_382_000 + i * 1000);
            let w = write_bundle(&dir, "app", &name, &files, |t| t.to_vec(), 64 * 1024, 3).unwrap();
            assert!(w.bytes <= 64 * 1024, "{}", w.bytes);
            assert_eq!(w.truncated.len(), 1, "{:?}", w.truncated);
            assert!(w.truncated[0].starts_with("fds.txt: "), "{:?}", w.truncated);
            paths.push(w.path);
        }
        // Another target's bundle is never removed.
        let other = bundle_name("app2", 1_795_324_000_000);
        write_bundle(&dir, "app2", &other, &files, |t| t.to_vec(), 64 * 1024, 1).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = paths[1..]
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        want.push(other);
        want.sort();
        assert_eq!(left, want, "the newest 3 of app, no temp dir left");
        let fds = std::fs::read_to_string(paths[3].join("fds.txt")).unwrap();
        assert!(fds.trim_end().ends_with("max_bytes = 64.0 KiB]"), "{fds}");
        assert!(std::fs::read_to_string(paths[3].join("README.txt"))
            .unwrap()
            .contains("fds.txt: "));
        let total: u64 = std::fs::read_dir(&paths[3])
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 64 * 1024, "{total}");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let file_path = tmp.path().join("a-file");
        std::fs::write(&file_path, "").unwrap();
        let dir = file_path.join("bundles");
        let err = write_bundle(&dir, "app", "app-x", &[], |_| Vec::new(), 1 << 20, 1).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
