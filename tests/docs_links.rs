//! The documentation points at things that exist. In README.md, ARCHITECTURE.md, docs/*.md,
//! benches/RESULTS.md, helm/README.md and systemd/README.md:
//!
//! - every relative link, `[..](path)`, `[..](path#anchor)` or `[..](#anchor)`, outside
//!   code, resolves: the file (or directory) exists, and the anchor is one of the target's
//!   headings under GitHub's slug rules (lowercase, spaces to `-`, punctuation but `-` and
//!   `_` dropped, a repeated heading gets `-1`, `-2`, ...). http(s) and mailto links are
//!   not followed;
//! - every `leakwatch SUBCOMMAND ... --flag` shown in a shell code block (or after a `$ `
//!   prompt in an output block) or in inline code names a subcommand the binary has and
//!   flags its `--help` lists (`config check`, `generate man`, ... are asked one level
//!   down). The hidden `demo-child` is a subcommand too.
//!
//! A failure names the file, the line and the bad link or flag.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use regex::Regex;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files checked, relative to the repository's root.
fn doc_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "benches/RESULTS.md",
        "helm/README.md",
        "systemd/README.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(ROOT).unwrap().to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(rel: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", rel.display()))
}

/// One line of a Markdown file: its number (from 1), its text, and the info string of the
/// fenced block it is inside (`None` outside code; fence lines themselves count as inside).
struct Line<'a> {
    no: usize,
    text: &'a str,
    fence: Option<String>,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, text) in text.lines().enumerate() {
        let trimmed = text.trim_start();
        if trimmed.starts_with("```") {
            let info = trimmed.trim_start_matches('`').trim().to_string();
            match fence {
                Some(_) => {
                    out.push(Line {
                        no: i + 1,
                        text,
                        fence: fence.take(),
                    });
                }
                None => {
                    fence = Some(info);
                    out.push(Line {
                        no: i + 1,
                        text,
                        fence: fence.clone(),
                    });
                }
            }
            continue;
        }
        out.push(Line {
            no: i + 1,
            text,
            fence: fence.clone(),
        });
    }
    out
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    let link = Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap();
    let text = link.replace_all(heading.trim(), "$1");
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown file's headings (outside code), repeats numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let heading = Regex::new(r"^#{1,6}\s+(.*?)\s*#*\s*$").unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in lines(text) {
        if line.fence.is_some() {
            continue;
        }
        let Some(c) = heading.captures(line.text) else {
            continue;
        };
        let base = slug(&c[1]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The text outside fenced blocks, with inline code blanked out (same length, newlines
/// kept, so offsets still give line numbers). A code span may wrap onto the next line of
/// its paragraph; a blank line ends any span.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for line in lines(text) {
        if line.fence.is_some() || line.text.trim().is_empty() {
            in_code = false;
            out.extend(std::iter::repeat_n(' ', line.text.chars().count()));
        } else {
            for c in line.text.chars() {
                if c == '`' {
                    in_code = !in_code;
                    out.push(' ');
                } else {
                    out.push(if in_code { ' ' } else { c });
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `a/../b` → `b`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Every broken relative link of one file: `file:line: message`.
fn broken_links(rel: &Path, cache: &mut HashMap<PathBuf, BTreeSet<String>>) -> Vec<String> {
    let text = read(rel);
    let masked = prose(&text);
    let link = Regex::new(r"\[[^\]]*\]\(\s*([^)\s]*)(?:\s+[^)]*)?\)").unwrap();
    let mut bad = Vec::new();
    for c in link.captures_iter(&masked) {
        let target = &c[1];
        let line = masked[..c.get(0).unwrap().start()].matches('\n').count() + 1;
        let at = format!("{}:{line}: link ({target})", rel.display());
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target, None),
        };
        let file = if path.is_empty() {
            rel.to_path_buf()
        } else {
            normalize(&rel.parent().unwrap_or(Path::new("")).join(path))
        };
        let abs = Path::new(ROOT).join(&file);
        if path.is_empty() && anchor.is_none() || !abs.exists() {
            bad.push(format!("{at}: {} does not exist", file.display()));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if !abs.is_file() || abs.extension().is_none_or(|e| e != "md") {
            bad.push(format!(
                "{at}: an anchor into {}, which is not a Markdown file",
                file.display()
            ));
            continue;
        }
        let known = cache
            .entry(file.clone())
            .or_insert_with(|| anchors(&read(&file)));
        if !known.contains(anchor) {
            bad.push(format!("{at}: {} has no heading #{anchor}", file.display()));
        }
    }
    bad
}

/// Shell words, with single and double quotes (no expansions: none is needed here).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                has = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Cut a shell line at its comment (a `#` that starts a word, outside quotes).
fn uncomment(s: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => return &s[..i],
            _ => {}
        }
        prev = c;
    }
    s
}

/// Split a shell line into its simple commands (`&&`, `||`, `|`, `;`), outside quotes.
fn segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '&' | '|' | ';') => {
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn is_leakwatch(word: &str) -> bool {
    word == "leakwatch" || word.ends_with("/leakwatch")
}

/// The arguments leakwatch gets from one simple shell command, if it runs leakwatch:
/// `leakwatch ...`, `/usr/bin/leakwatch ...`, `cargo run ... -- ...`, `docker run ...
/// leakwatch ...` (the image's entrypoint is the binary), `... -- leakwatch ...`.
fn leakwatch_args(command: &str) -> Option<Vec<String>> {
    let w = words(command);
    let mut i = 0;
    while i < w.len() && (w[i] == "sudo" || w[i] == "exec" || is_assignment(&w[i])) {
        i += 1;
    }
    let w = &w[i..];
    let first = w.first()?;
    if is_leakwatch(first) {
        return Some(w[1..].to_vec());
    }
    if first == "cargo" && w.get(1).is_some_and(|s| s == "run") {
        let dd = w.iter().position(|s| s == "--")?;
        return Some(w[dd + 1..].to_vec());
    }
    if first == "docker" && w.get(1).is_some_and(|s| s == "run") {
        let image = w[2..].iter().position(|s| !s.starts_with('-'))? + 2;
        return is_leakwatch(&w[image]).then(|| w[image + 1..].to_vec());
    }
    let dd = w.iter().position(|s| s == "--")?;
    let next = w.get(dd + 1)?;
    is_leakwatch(next).then(|| w[dd + 2..].to_vec())
}

fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A command shown in a file: where, and the leakwatch arguments.
struct Shown {
    at: String,
    args: Vec<String>,
}

/// Every leakwatch command one file shows: in shell blocks (every line), in other blocks
/// (lines after a `$ ` prompt; in plain output blocks, a command line quoted in the output
/// too: `leakwatch` then one of the `subcommands`), and in inline code that starts with
/// leakwatch.
fn commands(rel: &Path, subcommands: &BTreeSet<String>) -> Vec<Shown> {
    let text = read(rel);
    let mut out = Vec::new();
    let all = lines(&text);
    let mut i = 0;
    while i < all.len() {
        let line = &all[i];
        i += 1;
        let Some(lang) = &line.fence else { continue };
        if line.text.trim_start().starts_with("```") {
            continue;
        }
        let shell = matches!(lang.as_str(), "sh" | "bash" | "shell" | "console");
        let t = line.text.trim_start();
        let t = if let Some(rest) = t.strip_prefix("$ ") {
            rest
        } else if shell && lang != "console" {
            t
        } else if matches!(lang.as_str(), "" | "text" | "console") {
            let w = words(t);
            // A command line (with flags), not prose that names a subcommand.
            let quoted = (0..w.len().saturating_sub(1)).find(|&k| {
                is_leakwatch(&w[k])
                    && subcommands.contains(&w[k + 1])
                    && w[k + 2..].iter().any(|a| a.starts_with("--"))
            });
            if let Some(k) = quoted {
                out.push(Shown {
                    at: format!("{}:{}: `{}`", rel.display(), line.no, t.trim()),
                    args: w[k + 1..].to_vec(),
                });
            }
            continue;
        } else {
            continue;
        };
        // Backslash continuations.
        let mut joined = t.trim_end().to_string();
        let no = line.no;
        while joined.ends_with('\\') && i < all.len() && all[i].fence.is_some() {
            joined.pop();
            joined.push(' ');
            joined.push_str(all[i].text.trim());
            i += 1;
        }
        for seg in segments(uncomment(&joined)) {
            if let Some(args) = leakwatch_args(&seg) {
                out.push(Shown {
                    at: format!("{}:{no}: `{}`", rel.display(), seg.trim()),
                    args,
                });
            }
        }
    }
    // Inline code outside blocks, across the line breaks of a paragraph.
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let span = Regex::new(r"`([^`]+)`").unwrap();
    let flush = |paragraph: &mut Vec<(usize, &str)>, out: &mut Vec<Shown>| {
        let mut joined = String::new();
        let mut starts = Vec::new();
        for (no, t) in paragraph.iter() {
            starts.push((joined.len(), *no));
            joined.push_str(t);
            joined.push(' ');
        }
        for c in span.captures_iter(&joined) {
            let code = c[1].trim();
            let w = words(code);
            if w.len() < 2 || !is_leakwatch(&w[0]) {
                continue;
            }
            let pos = c.get(0).unwrap().start();
            let no = starts
                .iter()
                .rev()
                .find(|(s, _)| *s <= pos)
                .map_or(0, |(_, n)| *n);
            out.push(Shown {
                at: format!("{}:{no}: `{code}`", rel.display()),
                args: w[1..].to_vec(),
            });
        }
        paragraph.clear();
    };
    for line in &all {
        if line.fence.is_some() || line.text.trim().is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push((line.no, line.text));
        }
    }
    flush(&mut paragraph, &mut out);
    out
}

/// What one `--help` lists: its flags (long and short) and its subcommands.
struct Help {
    flags: BTreeSet<String>,
    subcommands: BTreeSet<String>,
}

fn help(path: &[&str]) -> Help {
    let out = Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "leakwatch {} --help: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let option =
        Regex::new(r"(?m)^\s{2,}(?:(-[A-Za-z0-9]),\s+)?(--[A-Za-z0-9][A-Za-z0-9-]*)").unwrap();
    let short = Regex::new(r"(?m)^\s{2,}(-[A-Za-z0-9])(?:\s|$)").unwrap();
    let mut flags = BTreeSet::new();
    for c in option.captures_iter(&text) {
        flags.extend(c.get(1).map(|m| m.as_str().to_string()));
        flags.insert(c[2].to_string());
    }
    for c in short.captures_iter(&text) {
        flags.insert(c[1].to_string());
    }
    let mut subcommands = BTreeSet::new();
    let mut in_commands = false;
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
        } else if in_commands {
            match line.split_whitespace().next() {
                Some(name) if line.starts_with("  ") => {
                    subcommands.insert(name.to_string());
                }
                _ => in_commands = false,
            }
        }
    }
    Help { flags, subcommands }
}

/// What is wrong with one shown command, if anything.
fn check_args(args: &[String], helps: &mut HashMap<Vec<String>, Help>) -> Option<String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let mut path: Vec<String> = Vec::new();
    let mut rest = &args[..];
    // The subcommand and, for `config` and `generate`, the one below it.
    loop {
        let here = helps
            .entry(path.clone())
            .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()));
        if here.subcommands.is_empty() {
            break;
        }
        let Some(next) = rest.first() else { break };
        if next.starts_with('-') {
            break;
        }
        let known = here.subcommands.contains(next) || (path.is_empty() && next == "demo-child");
        if !known {
            let place = if path.is_empty() {
                "leakwatch".to_string()
            } else {
                format!("leakwatch {}", path.join(" "))
            };
            return Some(format!("{place} has no subcommand `{next}`"));
        }
        path.push(next.clone());
        rest = &rest[1..];
    }
    let here = helps
        .entry(path.clone())
        .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()));
    for a in rest {
        if a == "--" {
            break;
        }
        if !a.starts_with('-') || a == "-" || a.parse::<f64>().is_ok() {
            continue;
        }
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        if !here.flags.contains(flag) {
            return Some(format!(
                "`leakwatch {} --help` does not know {flag}",
                path.join(" ")
            ));
        }
    }
    None
}

#[test]
fn every_relative_link_resolves() {
    let mut cache = HashMap::new();
    let mut bad = Vec::new();
    for f in doc_files() {
        bad.extend(broken_links(&f, &mut cache));
    }
    assert!(
        bad.is_empty(),
        "{} broken link(s):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn every_command_shown_is_one_the_binary_knows() {
    let mut helps = HashMap::new();
    let mut bad = Vec::new();
    let mut seen = 0;
    let mut subcommands = help(&[]).subcommands;
    subcommands.insert("demo-child".to_string());
    for f in doc_files() {
        for shown in commands(&f, &subcommands) {
            seen += 1;
            if let Some(why) = check_args(&shown.args, &mut helps) {
                bad.push(format!("{}: {why}", shown.at));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} command(s) the binary does not know:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // The docs show dozens: finding none would mean this test looks at nothing.
    assert!(
        seen >= 30,
        "only {seen} leakwatch commands found in the docs"
    );
}

#[test]
fn the_checks_catch_what_they_must() {
    // GitHub's slugs.
    assert_eq!(
        slug("What the daemon judged: `--from`"),
        "what-the-daemon-judged---from"
    );
    assert_eq!(
        slug("Slow consumers and aged CLOSE_WAIT"),
        "slow-consumers-and-aged-close_wait"
    );
    assert_eq!(
        slug("A tick that follows the sockets (2026-12-03)"),
        "a-tick-that-follows-the-sockets-2026-12-03"
    );
    let a = anchors("# A\n\n## B\n\n```sh\n# not a heading\n```\n\n## B\n\n## B\n");
    let want: BTreeSet<String> = ["a", "b", "b-1", "b-2"].map(String::from).into();
    assert_eq!(a, want);
    // Links inside code are not links.
    let p = prose("see [x](y.md) and `[z](w.md)`\n\n```\n[q](r.md)\n```\n");
    assert!(p.contains("[x](y.md)") && !p.contains("w.md") && !p.contains("r.md"));
    // Commands: found where they run, quotes and comments understood.
    assert_eq!(
        leakwatch_args("leakwatch run --cmdline-regex 'myapp --serve'"),
        Some(vec![
            "run".into(),
            "--cmdline-regex".into(),
            "myapp --serve".into()
        ])
    );
    assert_eq!(
        leakwatch_args("docker run --rm --pid=host leakwatch inspect --pid 1"),
        Some(vec!["inspect".into(), "--pid".into(), "1".into()])
    );
    assert_eq!(
        leakwatch_args("cargo run --release -- demo"),
        Some(vec!["demo".into()])
    );
    assert_eq!(leakwatch_args("helm install demo ./helm/leakwatch"), None);
    assert_eq!(
        uncomment("leakwatch demo   # --bundle DIR"),
        "leakwatch demo   "
    );
    // And the binary's help is what the commands are held to.
    let mut helps = HashMap::new();
    let args = |s: &str| words(s);
    assert_eq!(check_args(&args("run --pid 1 -c x.toml"), &mut helps), None);
    assert_eq!(check_args(&args("config check FILE"), &mut helps), None);
    assert_eq!(check_args(&args("demo-child --help"), &mut helps), None);
    assert!(check_args(&args("run --no-such-flag"), &mut helps)
        .is_some_and(|e| e.contains("--no-such-flag")));
    assert!(check_args(&args("frobnicate"), &mut helps).is_some_and(|e| e.contains("frobnicate")));
    assert!(check_args(&args("config frob"), &mut helps).is_some_and(|e| e.contains("frob")));
}
