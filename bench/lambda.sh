#!/usr/bin/env bash
# Cold start, warm per-batch latency/CPU and peak RSS of the three release Lambda binaries,
# beside the reference Python consumer (boto3 clients at import, under awslambdaric): each
# process behind a local Lambda Runtime API with the environment template.yaml gives it,
# every AWS call answered by moto on loopback. Prints the tables with ratios.
#
#   bench/lambda.sh                       # 20 spawns per function, 10 warm invocations per fixture
#   INIT_RUNS=5 BATCH_RUNS=3 bench/lambda.sh
#   SKIP_BUILD=1 bench/lambda.sh --no-init   # extra arguments go to lambda_bench
#
# Binaries are native release builds (`cargo build --release`), not cargo-lambda's
# cross-compiled arm64 ones. Raw samples go to target/lambda-bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
INIT_RUNS=${INIT_RUNS:-20}
BATCH_RUNS=${BATCH_RUNS:-10}
VENV=bench/.venv
PYTHON=${PYTHON:-python3}
MOTO_SERVER=${MOTO_SERVER:-.venv/bin/moto_server}
TOOLS_PYTHON=${TOOLS_PYTHON:-.venv/bin/python}   # boto3 + cfn-lint, from `make venv`
OUT=target/lambda-bench

[[ -x $MOTO_SERVER && -x $TOOLS_PYTHON ]] || { echo "lambda.sh: $MOTO_SERVER not found; run 'make venv' first" >&2; exit 1; }
if [[ ! -x $VENV/bin/python ]] || ! $VENV/bin/python -c 'import awslambdaric, aws_kinesis_agg.deaggregator, boto3' 2>/dev/null; then
  echo "setting up $VENV (bench/requirements.txt from PyPI)" >&2
  [[ -x $VENV/bin/python ]] || $PYTHON -m venv $VENV
  $VENV/bin/pip install --quiet --upgrade pip
  $VENV/bin/pip install --quiet -r bench/requirements.txt
fi

if [[ -z ${SKIP_BUILD:-} ]]; then   # SKIP_BUILD=1: measure the binaries already in target/
  # The runner itself is a debug build: in release its hyper server features would rebuild
  # the whole SDK chain a second time; its time is only the runtime API side of "wall".
  cargo build --quiet --release -p metrics-publisher -p window-aggregator -p alerter
  cargo build --quiet -p streamwatch-bench
fi
mkdir -p "$OUT"

work=$(mktemp -d)
cleanup() { [[ -n ${moto_pid:-} ]] && kill "$moto_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$OUT/moto.log" 2>&1 &
moto_pid=$!
endpoint=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$endpoint/moto-api/data.json" >/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
"$TOOLS_PYTHON" tools/moto_resources.py "$endpoint" >"$work/names.json" 2>"$work/resources.err" \
  || { cat "$work/resources.err" >&2; exit 1; }
"$TOOLS_PYTHON" bench/template_env.py "$work/names.json" >"$OUT/env.json"
# One windows table per window-aggregator series (suffix -s1, -s2, -s3; lambda_bench picks them
# up): windows close by the slowest shard's watermark across the table, so on a shared table
# the 100-record batch would also close the windows the 10,000-record batch left open.
"$TOOLS_PYTHON" - "$endpoint" "$work/names.json" <<'PY'
import json, os, sys
import boto3
ddb = boto3.client("dynamodb", endpoint_url=sys.argv[1], region_name=os.environ["AWS_REGION"])
name = json.load(open(sys.argv[2]))["WindowsTable"]
t = ddb.describe_table(TableName=name)["Table"]
for suffix in ("-s1", "-s2", "-s3"):
    ddb.create_table(TableName=name + suffix, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=t["AttributeDefinitions"], KeySchema=t["KeySchema"],
                     GlobalSecondaryIndexes=[{k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                                             for g in t.get("GlobalSecondaryIndexes", [])])
PY

target/debug/lambda_bench --env "$OUT/env.json" --bin-dir target/release \
  --python "$VENV/bin/python" --python-dir bench/reference_lambda \
  --init-runs "$INIT_RUNS" --batch-runs "$BATCH_RUNS" --moto-pid "$moto_pid" \
  --window-table-per-series --logs "$OUT" --json "$OUT/results.json" ${BENCH_ROWS:+--rows "$BENCH_ROWS"} "$@"
