#!/usr/bin/env bash
# The .deb's generated assets, from the release binary's own clap definitions: the man
# pages (gzipped, as Debian installs them) and the bash, zsh and fish completions, under
# target/assets/. Run after `cargo build --release` and before `cargo deb --no-build`:
#
#   cargo build --release --locked && bash packaging/assets.sh && cargo deb --no-build --locked
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/leakwatch}
out=target/assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" generate man "$out/man"
# -n: no name or time stamp in the gzip header, so the .deb is reproducible.
gzip -n -9 "$out"/man/*.1
"$bin" generate completions bash >"$out/completions/leakwatch"
"$bin" generate completions zsh >"$out/completions/_leakwatch"
"$bin" generate completions fish >"$out/completions/leakwatch.fish"
