//! No `unwrap()`, `expect()` or explicit panic in the code that input from /proc, a config
//! file or an HTTP client can reach: the whole of `src/` outside its test code. A truly
//! infallible case may stay if its line (or the line above) says why with `// infallible:`.
//!
//! Test code is a test file (`is_test_file`) or, inside any other file, exactly the item a
//! test-only `#[cfg(...)]` annotates (`test_lines`): a `mod tests { ... }` brace-matched to
//! its end, a `mod tests;` declaration, or one fn, impl or use. Everything after it is
//! shipped code again, and checked.

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

// ---- The test items of a file ----------------------------------------------------------

/// One token of Rust source, with the byte offset where it starts. Comments and whitespace
/// are no tokens; a string, raw string, byte string or char literal is one (`Lit`), so a
/// brace inside it is never counted.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// The contents of a string, raw string, byte string or char literal (escapes left as
    /// written).
    Lit(String),
}

/// The tokens of `text`, each with its byte offset.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if b[i..].starts_with(b"/*") {
            i = block_comment_end(b, i);
        } else if c == b'"' {
            let end = string_end(b, i + 1);
            out.push((lit(text, i + 1, end - 1), i));
            i = end;
        } else if c == b'\'' {
            match char_literal_end(text, i) {
                Some(end) => {
                    out.push((lit(text, i + 1, end - 1), i));
                    i = end;
                }
                None => {
                    out.push((Tok::Punct('\''), i)); // a lifetime or a label
                    i += 1;
                }
            }
        } else if c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric() || b[i] >= 0x80) {
                i += 1;
            }
            let word = &text[start..i];
            // A prefixed literal: b"..", c"..", r"..", r#".."#, br#".."#, b'x'.
            let raw = matches!(word, "r" | "br" | "cr");
            let hashes = b[i..].iter().take_while(|&&h| h == b'#').count();
            let byte_char = (word == "b" && b.get(i) == Some(&b'\''))
                .then(|| char_literal_end(text, i))
                .flatten();
            if raw && b.get(i + hashes) == Some(&b'"') {
                let open = i + hashes + 1;
                let end = raw_string_end(text, open, hashes);
                out.push((lit(text, open, end - 1 - hashes), start));
                i = end;
            } else if matches!(word, "b" | "c") && b.get(i) == Some(&b'"') {
                let end = string_end(b, i + 1);
                out.push((lit(text, i + 1, end - 1), start));
                i = end;
            } else if let Some(end) = byte_char {
                out.push((lit(text, i + 1, end - 1), start));
                i = end;
            } else {
                out.push((Tok::Ident(word.to_string()), start));
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or('\0');
            out.push((Tok::Punct(ch), i));
            i += ch.len_utf8();
        }
    }
    out
}

/// A literal whose contents are `text[from..to]` (empty when it has no end).
fn lit(text: &str, from: usize, to: usize) -> Tok {
    Tok::Lit(text.get(from..to).unwrap_or("").to_string())
}

/// The offset just past the `*/` closing the (nested) block comment opened at `start`.
fn block_comment_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The offset just past the `"` closing a string whose contents start at `start`.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The offset just past `"###` (with `hashes` hashes) closing a raw string whose contents
/// start at `start`.
fn raw_string_end(text: &str, start: usize, hashes: usize) -> usize {
    let close = format!("\"{}", "#".repeat(hashes));
    text[start..]
        .find(&close)
        .map_or(text.len(), |n| start + n + close.len())
}

/// The offset just past a char literal opened by the `'` at `start` (`'x'`, `'\n'`,
/// `'\u{7f}'`, `'{'`), or None when that `'` starts a lifetime or a label (`'a`).
fn char_literal_end(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start + 1..];
    if let Some(escaped) = rest.strip_prefix('\\') {
        // The escaped char itself may be a quote: `'\''`.
        let after = escaped.char_indices().nth(1)?.0;
        return Some(start + 2 + after + escaped[after..].find('\'')? + 1);
    }
    let mut chars = rest.chars();
    let first = chars.next()?;
    (chars.next() == Some('\'')).then(|| start + 1 + first.len_utf8() + 1)
}

/// Whether the `cfg` predicate starting at `toks[*i]` holds only when compiling tests:
/// `test`, the `test-support` feature (compiled only for tests, like `test_support/`),
/// `all(..)` with one such, `any(..)` of only such. `not(..)` never is. Moves `*i` past it.
fn test_only(toks: &[(Tok, usize)], i: &mut usize) -> bool {
    let Some((Tok::Ident(name), _)) = toks.get(*i) else {
        return false;
    };
    *i += 1;
    match toks.get(*i) {
        Some((Tok::Punct('='), _)) => {
            *i += 1;
            let value = toks.get(*i).map(|(t, _)| t.clone());
            *i += 1;
            name == "feature" && value == Some(Tok::Lit("test-support".into()))
        }
        Some((Tok::Punct('('), _)) => {
            *i += 1;
            let mut each = Vec::new();
            while !matches!(toks.get(*i), None | Some((Tok::Punct(')'), _))) {
                each.push(test_only(toks, i));
                if matches!(toks.get(*i), Some((Tok::Punct(','), _))) {
                    *i += 1;
                }
            }
            *i += 1;
            match name.as_str() {
                "all" => each.iter().any(|&t| t),
                "any" => !each.is_empty() && each.iter().all(|&t| t),
                _ => false,
            }
        }
        _ => name == "test",
    }
}

/// The index of the `]` closing the attribute whose `[` is `toks[open]`.
fn attribute_end(toks: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0;
    for (j, (t, _)) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('[' | '(' | '{') => depth += 1,
            Tok::Punct(']' | ')' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len() - 1
}

/// The word that says what an item is (`fn`, `mod`, `impl`, `use`, `const` ...), past its
/// visibility and qualifiers; "" when it starts with no word (a block, an expression).
fn item_keyword(toks: &[(Tok, usize)]) -> &str {
    let word = |i: usize| match toks.get(i) {
        Some((Tok::Ident(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let mut i = 0;
    loop {
        match toks.get(i) {
            // `pub(crate)`, `extern "C"`.
            Some((Tok::Punct('(' | ')') | Tok::Lit(_), _)) => {}
            Some((Tok::Ident(w), _)) => match w.as_str() {
                "pub" | "crate" | "super" | "self" | "in" | "async" | "unsafe" | "default" => {}
                // `const fn`, `extern "C" fn`; but `const X: u8 = 1;`, `extern crate x;`.
                "const" | "extern"
                    if matches!(toks.get(i + 1), Some((Tok::Lit(_), _)))
                        || matches!(word(i + 1), Some("fn" | "unsafe" | "async" | "extern")) => {}
                w => return w,
            },
            _ => return "",
        }
        i += 1;
    }
}

/// The index of the last token of the item that starts at `toks[start]` (after its
/// attribute): `;` at its own depth ends any item; the closing brace of its body ends an
/// item with a body (`mod`, `fn`, `impl`, `trait`, `struct`, `enum`, `macro_rules!` ...);
/// a `,` or a brace block ends anything else (a field, an arm, a statement); the closing
/// bracket of what encloses it ends every item just before it.
fn item_end(toks: &[(Tok, usize)], start: usize) -> Option<usize> {
    let mut i = start;
    // Its other attributes.
    while matches!(toks.get(i), Some((Tok::Punct('#'), _)))
        && matches!(toks.get(i + 1), Some((Tok::Punct('['), _)))
    {
        i = attribute_end(toks, i + 1) + 1;
    }
    let keyword = item_keyword(&toks[i.min(toks.len())..]);
    let has_body = matches!(
        keyword,
        "mod" | "fn" | "impl" | "trait" | "struct" | "enum" | "union" | "macro_rules"
    );
    let to_semicolon = matches!(keyword, "use" | "type" | "static" | "const" | "let");
    let mut depth = 0i32;
    for (j, (t, _)) in toks.iter().enumerate().skip(i) {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(c @ (')' | ']' | '}')) => {
                depth -= 1;
                if depth < 0 {
                    return j.checked_sub(1);
                }
                if depth == 0 && *c == '}' && !to_semicolon {
                    return Some(j);
                }
            }
            Tok::Punct(';') if depth == 0 => return Some(j),
            Tok::Punct(',') if depth == 0 && !has_body && !to_semicolon => return Some(j),
            _ => {}
        }
    }
    None
}

/// The index of the last token before the bracket that closes the block `toks[start]` is
/// in (or of the last token, at the top of a file).
fn block_rest_end(toks: &[(Tok, usize)], start: usize) -> usize {
    let mut depth = 0i32;
    for (j, (t, _)) in toks.iter().enumerate().skip(start) {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth < 0 {
                    return j.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// Which lines of `text` are test code: from each test-only `#[cfg(..)]` to the end of the
/// item it annotates (`#![cfg(test)]`: to the end of the file or of the enclosing block).
/// An error when the braces do not balance: the lexer misread the file, and would misplace
/// the end of a test module.
fn test_lines(text: &str) -> Result<Vec<bool>, String> {
    let toks = tokens(text);
    let line_of = |offset: usize| text[..offset].matches('\n').count();
    let mut test = vec![false; text.lines().count()];
    let mut depth = 0i32;
    let mut i = 0;
    while i < toks.len() {
        let inner = is_punct(&toks, i + 1, '!');
        let open = i + 1 + usize::from(inner);
        if is_punct(&toks, i, '#') && is_punct(&toks, open, '[') {
            let close = attribute_end(&toks, open);
            if is_test_cfg(&toks[open + 1..close]) {
                let end = match inner {
                    true => Some(block_rest_end(&toks, close + 1)),
                    false => item_end(&toks, close + 1),
                };
                let end = end.ok_or_else(|| {
                    format!("the item after line {} never ends", line_of(toks[i].1) + 1)
                })?;
                for line in &mut test[line_of(toks[i].1)..=line_of(toks[end].1)] {
                    *line = true;
                }
                i = end;
            } else {
                i = close;
            }
        } else if is_punct(&toks, i, '{') {
            depth += 1;
        } else if is_punct(&toks, i, '}') {
            depth -= 1;
            if depth < 0 {
                return Err(format!(
                    "a `}}` closes nothing on line {}",
                    line_of(toks[i].1) + 1
                ));
            }
        }
        i += 1;
    }
    if depth != 0 {
        return Err(format!("{depth} brace(s) left open at the end"));
    }
    Ok(test)
}

fn is_punct(toks: &[(Tok, usize)], i: usize, c: char) -> bool {
    matches!(toks.get(i), Some((Tok::Punct(p), _)) if *p == c)
}

/// Whether an attribute's tokens (inside its brackets) are `cfg(PREDICATE)` true only in
/// tests.
fn is_test_cfg(attr: &[(Tok, usize)]) -> bool {
    let mut at = 2;
    matches!(attr.first(), Some((Tok::Ident(w), _)) if w == "cfg")
        && is_punct(attr, 1, '(')
        && test_only(attr, &mut at)
}

/// The lines of `text` with its test code blanked: line numbers stay those of the file.
fn shipped_lines(text: &str) -> Result<Vec<String>, String> {
    let test = test_lines(text)?;
    Ok(text
        .lines()
        .zip(test)
        .map(|(line, test)| {
            if test {
                String::new()
            } else {
                line.to_string()
            }
        })
        .collect())
}

/// The code of `path` outside its test items, as lines (test lines blank).
fn shipped_code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read a source file");
    shipped_lines(&text).unwrap_or_else(|e| panic!("{}: the audit misread it: {e}", path.display()))
}

/// The files of `src/` outside its test files.
fn shipped_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|p| !is_test_file(p.strip_prefix(&src).unwrap()));
    files.sort();
    (src, files)
}

// ---- Panics ------------------------------------------------------------------------------

/// The lines (1-based, trimmed) of shipped code that may panic, unexcused.
fn panics(lines: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let excused = line.contains("// infallible:")
            || i.checked_sub(1)
                .is_some_and(|j| lines[j].contains("// infallible:"));
        if !excused && FORBIDDEN.iter().any(|f| line.contains(f)) {
            found.push((i + 1, trimmed.to_string()));
        }
    }
    found
}

#[test]
fn no_unwrap_expect_or_panic_outside_tests() {
    let (src, files) = shipped_files();
    let mut found = Vec::new();
    for path in &files {
        for (line, text) in panics(&shipped_code(path)) {
            let rel = path.strip_prefix(&src).unwrap();
            found.push(format!("{}:{line}: {text}", rel.display()));
        }
    }
    assert!(files.len() > 40, "only {} files checked", files.len());
    assert!(
        found.is_empty(),
        "panics reachable from input:\n{}",
        found.join("\n")
    );
}

// ---- Long functions ----------------------------------------------------------------------

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

/// Every function of these lines, rustfmt-formatted: from its `fn` line to the closing
/// brace at the same indentation. (name, 1-based line, lines).
fn functions_in(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, indent)) = fn_start(line) else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue; // a declaration in a trait or extern block
        }
        if line.trim_end().ends_with('}') && line.matches('{').count() == line.matches('}').count()
        {
            out.push((name.to_string(), i + 1, 1)); // a one-line body: `fn f() {}`
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(len) = lines[i..].iter().position(|l| *l == close) else {
            continue;
        };
        out.push((name.to_string(), i + 1, len + 1));
    }
    out
}

/// Every function of `src/` outside tests. (name, file:line, lines).
fn functions() -> Vec<(String, String, usize)> {
    let (src, files) = shipped_files();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap().display().to_string();
        for (name, line, len) in functions_in(&shipped_code(&path)) {
            out.push((name, format!("{rel}:{line}"), len));
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
    // Regression: everything after a file's first `#[cfg(test)]` went unchecked, such as
    // `TargetJudge::judge` after judge/mod.rs's `mod tests;`.
    assert!(
        all.iter()
            .any(|(n, at, _)| n == "judge" && at.starts_with("judge/mod.rs:")),
        "TargetJudge::judge is not measured"
    );
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

// ---- The audit's own parser, on small files ----------------------------------------------

/// The shipped lines of `text`, trimmed, blank ones left out.
fn shipped(text: &str) -> Vec<String> {
    shipped_lines(text)
        .expect("a file whose braces balance")
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn audit_checks_a_shipped_fn_after_the_test_module() {
    let text = "\
fn before() {}
#[cfg(test)]
mod tests {
    #[test]
    fn t() {
        x.unwrap();
    }
}
fn after() {
    y.unwrap();
}
";
    assert_eq!(
        shipped(text),
        ["fn before() {}", "fn after() {", "y.unwrap();", "}"]
    );
    let lines = shipped_lines(text).unwrap();
    assert_eq!(panics(&lines), [(10, "y.unwrap();".to_string())]);
    assert_eq!(
        functions_in(&lines),
        [("before".to_string(), 1, 1), ("after".to_string(), 9, 3)]
    );
}

#[test]
fn audit_is_not_fooled_by_braces_in_strings_chars_or_comments() {
    let text = r####"
#[cfg(test)]
mod tests {
    const A: &str = "}}} \" }";
    const B: &str = r#"}" }"#;
    const C: &[u8] = br##"}"# }"##;
    const D: char = '}';
    const E: char = '\'';
    const F: u8 = b'{';
    fn g<'a>(s: &'a str) -> &'a str { s } // }
    /* } /* nested } */ } */
    /// a doc comment: }
    fn h() { let _ = ['{', '\u{7d}']; }
}
fn shipped() -> &'static str {
    "{"
}
"####;
    assert_eq!(
        shipped(text),
        ["fn shipped() -> &'static str {", "\"{\"", "}"]
    );
}

#[test]
fn audit_skips_only_the_one_item_its_cfg_annotates() {
    let text = "\
#[cfg(test)]
mod tests;
#[cfg(all(test, target_os = \"linux\"))]
use std::fmt;
pub struct S;
impl S {
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> [u8; 2] {
        [0; 2]
    }
    pub fn shipped(&self) {}
}
#[cfg(test)]
impl Drop for S {
    fn drop(&mut self) {}
}
#[cfg(not(test))]
fn not_test() {}
#[cfg(any(test, unix))]
fn any_unix() {}
#[cfg(any(test, feature = \"test-support\"))]
pub mod test_support;
const AFTER: u8 = 1;
";
    assert_eq!(
        shipped(text),
        [
            "pub struct S;",
            "impl S {",
            "pub fn shipped(&self) {}",
            "}",
            "#[cfg(not(test))]",
            "fn not_test() {}",
            "#[cfg(any(test, unix))]",
            "fn any_unix() {}",
            "const AFTER: u8 = 1;",
        ]
    );
}

#[test]
fn audit_ends_a_test_field_or_statement_where_it_ends() {
    let text = "\
struct S {
    #[cfg(test)]
    seen: Vec<u8>,
    kept: u8,
}
fn f() {
    #[cfg(test)]
    let x = S { seen: vec![], kept: 0 };
    #[cfg(test)]
    {
        check();
    }
    kept();
}
";
    assert_eq!(
        shipped(text),
        ["struct S {", "kept: u8,", "}", "fn f() {", "kept();", "}"]
    );
}

#[test]
fn audit_refuses_a_file_it_cannot_balance() {
    assert!(shipped_lines("fn f() {\n").is_err());
    assert!(shipped_lines("}\n").is_err());
}

#[test]
fn an_inner_cfg_test_makes_the_rest_test_code() {
    assert!(shipped("#![cfg(test)]\nfn f() { x.unwrap() }\n").is_empty());
}

#[test]
fn audit_refuses_a_test_item_that_never_ends() {
    let text = "fn shipped() {}\n#[cfg(test)]\nconst X: u8 = 1\n";
    assert!(shipped_lines(text).is_err());
}
