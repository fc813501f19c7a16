//! No `unwrap()`, `expect()` or explicit panic in the code that input from /proc, a config
//! file or an HTTP client can reach: the whole of `src/` outside its test modules. A truly
//! infallible case may stay if its line (or the line above) says why with `// infallible:`.

use std::path::{Path, PathBuf};

const FORBIDDEN: [&str; 7] = [
    ".unwrap()",
    ".expect(",
    "panic!(",
    "unreachable!(",
    "todo!(",
    "unimplemented!(",
    ".unwrap_unchecked(",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test-only files: `tests.rs`, anything under a `tests/` or `testing/` module directory.
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "testing")
}

#[test]
fn no_unwrap_expect_or_panic_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut checked = 0;
    for path in files
        .iter()
        .filter(|p| !is_test_file(p.strip_prefix(&src).unwrap()))
    {
        let text = std::fs::read_to_string(path).expect("read a source file");
        // Code after the first `#[cfg(test)]` is the file's test module.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            let excused = line.contains("// infallible:")
                || i.checked_sub(1)
                    .is_some_and(|j| lines[j].contains("// infallible:"));
            if !excused && FORBIDDEN.iter().any(|f| line.contains(f)) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, trimmed));
            }
        }
        checked += 1;
    }
    assert!(checked > 40, "only {checked} files checked");
    assert!(
        found.is_empty(),
        "panics reachable from input:\n{}",
        found.join("\n")
    );
}
