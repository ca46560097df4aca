#!/usr/bin/env bash
# Every benchmark in bench/ (decode.sh, lambda.sh, and any other bench/*.sh), one after
# the other, then one table of all their results with the ratios to the reference.
# Each script's own output is shown as it runs (on stderr); the table is on stdout.
# Scripts that take --rows / BENCH_ROWS append TSV rows (section, measure, streamwatch,
# reference, ratio, goal); for decode.sh, which prints text, the rows are read off its output,
# and a script ending in one JSON line of results (soak.sh) gives one row per value.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BENCH_ROWS=$work/rows.tsv
: >"$BENCH_ROWS"
failed=()
for script in bench/*.sh; do
  name=$(basename "$script" .sh)
  [[ $name == all ]] && continue
  echo "=== $script" >&2
  before=$(wc -l <"$BENCH_ROWS")
  if ! bash "$script" 2>&1 | tee "$work/$name.out" >&2; then
    failed+=("$script")
    continue
  fi
  if (( $(wc -l <"$BENCH_ROWS") == before )); then
    python3 - "$name" "$work/$name.out" >>"$BENCH_ROWS" <<'PY'
import json, re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def num(label, unit):
    m = re.search(rf"^{label}\s+([\d,.]+)\s*{unit}", text, re.M)
    return m.group(1) if m else None
ours, ref = num("streamwatch", "records/s"), num("python reference", "records/s")
ratio, rss = num("ratio", "x"), num("peak RSS", "MB")
if ours and ref:
    print(f"{name}: KPL de-aggregation + decode, 1 core\trecords/s\t{ours}\t{ref}\t{ratio}x\t")
if rss:
    print(f"{name}: peak RSS of one pass\tMB\t{rss}\t-\t-\t")
if not (ours or rss):
    # A script that ends with one JSON line of results (soak.sh): one row per scalar.
    last = next((l for l in reversed(text.splitlines()) if l.startswith("{")), None)
    try:
        doc = json.loads(last) if last else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        flat = {}
        for k, v in doc.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{k2}": v2 for k2, v2 in v.items() if not isinstance(v2, (dict, list))})
            elif not isinstance(v, list):
                flat[k] = v
        for k, v in flat.items():
            print(f"{name}\t{k}\t{v}\t-\t-\t")
    else:
        print(f"{name}\t(no table rows; see its output)\t-\t-\t-\t")
PY
  fi
done

python3 - "$BENCH_ROWS" <<'PY'
import datetime, os, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"\nstreamwatch benchmarks — {cpu}, {os.cpu_count()} cores (shared), "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
head = ["benchmark", "measure", "streamwatch", "reference", "ratio", "goal"]
rows = [r + [""] * (6 - len(r)) for r in rows]
width = [max(len(r[i]) for r in [head] + rows) for i in range(6)]
line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |"
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in width) + "|")
for r in rows:
    print(line(r))
PY
if (( ${#failed[@]} )); then
  echo "all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
