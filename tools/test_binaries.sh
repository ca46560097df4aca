#!/usr/bin/env bash
# Usage: tools/test_binaries.sh BIN...  — prints "BIN PATH" for each named binary target as the
# test build makes it (`cargo test --workspace --no-run`, the build cargo-nextest runs), building
# it first if needed. `make test`'s lambda-check and report-check run these binaries instead of
# building their own: `cargo build -p …` resolves other features for the same dependencies
# (the test build adds its dev-dependencies' ones: serde `alloc`, regex unicode, …), so it would
# compile the whole AWS SDK a second time (~5 CPU-minutes, docs/develop.md "Test time").
set -euo pipefail
cd "$(dirname "$0")/.."
(( $# > 0 )) || { echo "usage: $0 BIN..." >&2; exit 64; }
want=$(printf '%s\n' "$@" | jq -R . | jq -sc .)
found=$(cargo test --workspace --locked --no-run --message-format json-render-diagnostics \
  | jq -r --argjson want "$want" 'select(.reason == "compiler-artifact" and .target.kind == ["bin"]
      and .profile.test == false and (.target.name as $n | $want | index($n)))
      | "\(.target.name) \(.executable)"')
for bin in "$@"; do
  grep -q "^$bin " <<<"$found" || { echo "test_binaries: no binary target '$bin' in the test build" >&2; exit 1; }
done
echo "$found"
