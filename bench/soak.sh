#!/usr/bin/env bash
# The soak: 1,000 turbines at 1 reading/s for 2 simulated hours plus the sample accident
# CSV replayed every 5 simulated minutes, through the embedded pipeline and its event
# source mappings (release build). Prints progress (RSS every 10 simulated minutes) and
# one JSON line of results; fails when any count is not exact.
#   bench/soak.sh                       # the full soak
#   bench/soak.sh --turbines 100 --minutes 30
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p streamwatch-local --example soak
exec target/release/examples/soak --turbines 1000 --minutes 120 --accidents-every 5 "$@"
