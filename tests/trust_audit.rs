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

/// Test-only files: `tests.rs` and `NAME_tests.rs` (a `#[cfg(test)] mod`), anything under a
/// `tests/` or `testing/` module directory, and `test_support/` (compiled only for tests:
/// the `test-support` feature).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.components().any(|c| {
            let c = c.as_os_str();
            c == "tests" || c == "testing" || c == "test_support"
        })
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

/// The code of `path` before its test module, as lines.
fn shipped_code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines().map(String::from).collect()
}

/// The files of `src/` outside its test modules.
fn shipped_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|p| !is_test_file(p.strip_prefix(&src).unwrap()));
    files.sort();
    (src, files)
}

/// `fn NAME` at the start of a line (after `pub`, `const`, `async`, `unsafe`): the name and
/// the line's indentation.
fn fn_start(line: &str) -> Option<(&str, usize)> {
    let indent = line.len() - line.trim_start().len();
    let mut rest = line.trim_start();
    if rest.starts_with("pub(") {
        rest = rest.split_once(") ")?.1;
    }
    for word in ["pub ", "const ", "async ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some((&name[..end], indent))
}

/// Every function of `src/` outside tests, rustfmt-formatted: from its `fn` line to the
/// closing brace at the same indentation. (name, file:line, lines).
fn functions() -> Vec<(String, String, usize)> {
    let (src, files) = shipped_files();
    let mut out = Vec::new();
    for path in files {
        let lines = shipped_code(&path);
        for (i, line) in lines.iter().enumerate() {
            let Some((name, indent)) = fn_start(line) else {
                continue;
            };
            if line.trim_end().ends_with(';') {
                continue; // a declaration in a trait or extern block
            }
            let close = format!("{}}}", " ".repeat(indent));
            let Some(len) = lines[i..].iter().position(|l| *l == close) else {
                continue; // a one-line body: `fn f() -> u8 { 1 }`
            };
            let at = format!("{}:{}", path.strip_prefix(&src).unwrap().display(), i + 1);
            out.push((name.to_string(), at, len + 1));
        }
    }
    out
}

/// Functions stay short enough to read at once: none over 80 lines in src/ outside tests
/// (most under 60).
#[test]
fn no_function_outside_tests_is_over_80_lines() {
    let all = functions();
    assert!(all.len() > 300, "only {} functions found", all.len());
    // The scan finds functions of every kind: methods, free, `pub(crate)`.
    assert!(all.iter().any(|(n, _, _)| n == "validate"));
    assert!(all.iter().any(|(n, _, _)| n == "collect_sections"));
    let long: Vec<String> = all
        .iter()
        .filter(|(_, _, len)| *len > 80)
        .map(|(name, at, len)| format!("{at}: fn {name} is {len} lines"))
        .collect();
    assert!(long.is_empty(), "over 80 lines:\n{}", long.join("\n"));
}

/// The top-level modules each file of `src/` imports (`crate::NAME`), outside comments and
/// tests.
fn module_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let (src, files) = shipped_files();
    let mut deps = std::collections::BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let entry: &mut std::collections::BTreeSet<String> =
            deps.entry(module.clone()).or_default();
        for line in shipped_code(&path) {
            let code = line.split("//").next().unwrap_or("");
            // `crate::{a, b}` would hide its modules from this scan.
            assert!(
                !code.contains("crate::{"),
                "{}: one `use crate::MODULE::...` per module, please: {line}",
                rel.display()
            );
            for part in code.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    entry.insert(name);
                }
            }
        }
    }
    deps
}

/// Layers point one way: no two top-level modules of `src/` import each other, directly
/// or through others (outside tests).
#[test]
fn no_import_cycle_between_modules() {
    let deps = module_imports();
    assert!(deps.len() > 10, "{deps:?}");
    assert!(deps["config"].contains("judge"), "{deps:?}");
    // Depth-first search for a path from each module back to itself.
    let mut cycles = Vec::new();
    for start in deps.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in deps.get(last).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
