#!/usr/bin/env bash
# De-aggregate + decode + JSON field extraction on the 5.6 MB KPL accidents event:
# streamwatch beside the reference Python consumer (aws_kinesis_agg + base64 + json.loads),
# both pinned to one core, in the same go. Prints records/s for each, the ratio, and
# streamwatch's peak RSS against the event size.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENT=${1:-tests/fixtures/kinesis-accidents-kpl.json}
RUNS=${RUNS:-15}
VENV=bench/.venv
PYTHON=${PYTHON:-python3}

if [[ ! -x $VENV/bin/python ]] || ! $VENV/bin/python -c 'import aws_kinesis_agg.deaggregator' 2>/dev/null; then
  echo "setting up $VENV (aws-kinesis-agg from PyPI)" >&2
  $PYTHON -m venv $VENV
  $VENV/bin/pip install --quiet --upgrade pip
  $VENV/bin/pip install --quiet 'aws-kinesis-agg==1.2.3' six  # the package imports six without declaring it
fi
cargo build --quiet --release -p streamwatch-core --example decode_throughput
BIN=target/release/examples/decode_throughput

ours=$(taskset -c 0 "$BIN" "$EVENT" "$RUNS")
ref=$(taskset -c 0 "$VENV/bin/python" bench/reference_consumer.py "$EVENT" "$(( RUNS < 7 ? RUNS : 7 ))")
# CPU time per pass as well: on a shared box wall-clock rates swing, user CPU seconds much
# less. Ours over CPU_PASSES passes, the reference over a fifth of them, minus its start-up.
CPU_PASSES=${CPU_PASSES:-100}
cpu() { { /usr/bin/time -f %U taskset -c 0 "$@" >/dev/null; } 2>&1 | tail -n1; }
ours_cpu=$(cpu "$BIN" "$EVENT" "$CPU_PASSES")
ref_cpu=$(cpu "$VENV/bin/python" bench/reference_consumer.py "$EVENT" "$(( CPU_PASSES / 5 ))")
ref_start=$(cpu "$VENV/bin/python" -c 'import base64, json; from aws_kinesis_agg.deaggregator import iter_deaggregate_records')
# Peak RSS of one pass (process baseline included), against the event's size on disk.
rss_kb=$( { /usr/bin/time -f '%M' "$BIN" "$EVENT" 1 >/dev/null; } 2>&1 | tail -n1 )
size=$(stat -c %s "$EVENT")

python3 - "$ours" "$ref" "$rss_kb" "$size" "$EVENT" "$ours_cpu" "$ref_cpu" "$ref_start" "$CPU_PASSES" <<'PY'
import json, platform, subprocess, sys
ours, ref = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rss_kb, size, event = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
passes = int(sys.argv[9])
ours_ms = float(sys.argv[6]) / passes * 1e3
ref_ms = (float(sys.argv[7]) - float(sys.argv[8])) / (passes // 5) * 1e3
assert ours["records"] == ref["records"], f"record counts differ: {ours['records']} vs {ref['records']}"
assert abs(ours["checksum"] - ref["checksum"]) < 1e-6, "field sums differ"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"event            {event} ({size / 1e6:.1f} MB, {ours['records']} user records)")
print(f"machine          {cpu}, 1 core (taskset -c 0)")
print(f"streamwatch      {ours['records_per_s']:>12,} records/s  (median of {ours['runs']})")
print(f"python reference {ref['records_per_s']:>12,} records/s  (median of {ref['runs']})")
print(f"ratio            {ours['records_per_s'] / ref['records_per_s']:>12.1f}x")
print(f"CPU per pass     {ours_ms:>12.1f} ms streamwatch, {ref_ms:.1f} ms reference = {ref_ms / ours_ms:.1f}x")
print(f"peak RSS         {rss_kb / 1024:>12.1f} MB  = {rss_kb * 1024 / size:.2f}x the event size")
PY
