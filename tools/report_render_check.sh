#!/usr/bin/env bash
# Renders the demo's HTML report in headless Chromium (Debian's package, installed here if
# missing) and fails if the screenshot is blank. Part of `make test`; it runs the CLI the test build
# made (tools/test_binaries.sh): `cargo run -p streamwatch` would compile the AWS SDK again with
# other features, ~3.4 CPU-minutes at the very end of `make test` (a release build: more).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium for the report render check" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cli=$(tools/test_binaries.sh streamwatch 2>"$work/build.log" | awk '{ print $2 }') \
  || { cat "$work/build.log" >&2; echo "report render check: building the CLI failed" >&2; exit 1; }
"$cli" demo --json --report "$work/report.html" >"$work/summary.json" 2>"$work/progress.log"
# Flags as the machine's notes require: no background networking, no first-run, fresh profile.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1300,1900 \
  --screenshot="$work/report.png" "file://$work/report.html" >/dev/null 2>&1
size=$(stat -c %s "$work/report.png")
# A blank 1300x1900 page compresses to a few KB; the report's charts and tables do not.
(( size > 60000 )) || { echo "report render check: screenshot is ${size} bytes, looks blank" >&2; exit 1; }
charts=$(grep -o '<svg class="chart"' "$work/report.html" | wc -l)
turbines=5  # the demo's default
(( charts == turbines )) || { echo "report render check: $charts charts for $turbines turbines" >&2; exit 1; }
echo "report render check: ok (${size}-byte screenshot, $charts turbine charts)"
