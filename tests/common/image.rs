//! The image `packaging/Dockerfile` builds, as a container runtime sees it: its runtime
//! stage's instructions, and the argv a container of that image runs.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Dockerfile's instructions, continuation lines joined, comments left out.
pub fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("packaging/Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && cur.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(line);
                let (op, args) = cur.split_once(' ').unwrap_or((&cur, ""));
                out.push((op.to_uppercase(), args.trim().to_string()));
                cur.clear();
            }
        }
    }
    out
}

/// The last `op` of the runtime (last) stage, in exec form (a JSON array).
fn runtime_exec_form(op: &str) -> Vec<String> {
    let ins = instructions();
    let runtime_at = ins.iter().rposition(|(o, _)| o == "FROM").unwrap();
    let args = ins[runtime_at..]
        .iter()
        .rev()
        .find(|(o, _)| o == op)
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("no {op} in the runtime stage"));
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{op} {args}: not exec form: {e}"))
}

/// The image's `ENTRYPOINT`.
pub fn entrypoint() -> Vec<String> {
    runtime_exec_form("ENTRYPOINT")
}

/// The image's `CMD`.
pub fn cmd() -> Vec<String> {
    runtime_exec_form("CMD")
}

/// The argv of a container of this image, as Kubernetes and container runtimes build it: a
/// container's `command` replaces the image's ENTRYPOINT (and drops its CMD), its `args`
/// replace the CMD. Empty lists count as unset, as in Kubernetes.
pub fn container_argv(command: &[String], args: &[String]) -> Vec<String> {
    let mut argv = if command.is_empty() {
        entrypoint()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend_from_slice(args);
    } else if command.is_empty() {
        argv.extend(cmd());
    }
    argv
}
