#!/usr/bin/env bash
# Runs every function on cargo-lambda's local Lambda runtime emulator (`cargo lambda watch
# --only-lambda-apis`) against moto server, sends each its sample events with `cargo lambda
# invoke --data-file`, and checks what the services hold afterwards. Part of `make test`.
#
# The function binaries are the test build's (tools/test_binaries.sh), started here with the
# environment `cargo lambda watch` would give them ([workspace.metadata.lambda.env], the env
# file, the runtime variables). Letting the watcher build them (`cargo run --bin …`) would
# compile the AWS SDK a second time with other features, ~5 CPU-minutes of `make test`; that
# each function also builds on its own is what `make sam-build` checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
export PATH=$PWD/$VENV/bin:$PATH
work=$(mktemp -d)
fn_pids=()
cleanup() { kill "${fn_pids[@]}" "${watch_pid:-}" "${moto_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
moto_port=$(free_port); invoke_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" </dev/null >"$work/moto.log" 2>&1 &
moto_pid=$!
endpoint=http://127.0.0.1:$moto_port
for _ in $(seq 300); do curl -sf "$endpoint/moto-api/data.json" >/dev/null && break; sleep 0.1; done

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
python tools/moto_resources.py "$endpoint" >"$work/names.json"
name() { python3 -c "import json,sys; print(json.load(open('$work/names.json'))['$1'])"; }

cat >"$work/env" <<ENV
AWS_ENDPOINT_URL=$endpoint
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
ALERTS_TABLE=$(name AlertsTable)
WINDOWS_TABLE=$(name WindowsTable)
TOPIC_ARN=$(name AlertsTopic)
ENV

fail() {
  echo "lambda-watch check: $*" >&2
  echo "--- watch log (last 20 lines)" >&2; tail -n 20 "$work/watch.log" >&2 || true
  for f in "$work"/fn-*.log; do
    [[ -e $f ]] && { echo "--- ${f##*/fn-} (last 20 lines)" >&2; tail -n 20 "$f" >&2; }
  done
  echo "--- moto log (last 20 lines)" >&2; tail -n 20 "$work/moto.log" >&2 || true
  exit 1
}

# The test build's binaries, built here in the open and with a deadline if `make unit` has not
# built them yet: a slow or failing compile shows here, not as a silent invoke. The deadline is
# the whole test build's (it took 23 min 22 s from a fresh clone on this 2-core VM at load
# 10-14, 2026-12-01), far below CI's 90-minute limit.
functions=(metrics-publisher window-aggregator alerter)
timeout 2700 tools/test_binaries.sh "${functions[@]}" >"$work/bins" \
  || fail "building the functions (the test build) failed or took over 45 minutes"

cargo lambda watch --quiet --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$invoke_port" \
  </dev/null >"$work/watch.log" 2>&1 &
watch_pid=$!
up=
for _ in $(seq 300); do
  (echo > /dev/tcp/127.0.0.1/"$invoke_port") 2>/dev/null && { up=1; break; }
  sleep 0.2
done
[[ -n $up ]] || fail "cargo lambda watch did not listen on port $invoke_port within 60 s"

# Each function as the watcher starts it: Cargo.toml's [workspace.metadata.lambda.env], then the
# env file, then the runtime's variables; its Runtime API is the emulator's path for its name.
"$VENV/bin/python" - >"$work/metadata.env" <<'PY'
import tomllib
for key, value in tomllib.load(open("Cargo.toml", "rb"))["workspace"]["metadata"]["lambda"]["env"].items():
    print(f"{key}={value}")
PY
for fn in "${functions[@]}"; do
  bin=$(awk -v f="$fn" '$1 == f { print $2 }' "$work/bins")
  mapfile -t vars < <(cat "$work/metadata.env" "$work/env")
  env "${vars[@]}" AWS_LAMBDA_FUNCTION_NAME="$fn" AWS_LAMBDA_FUNCTION_VERSION=1 \
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$invoke_port/.rt/$fn" \
    "$bin" </dev/null >"$work/fn-$fn.log" 2>&1 &
  fn_pids+=($!)
done

# Each invocation has a deadline (the binaries are built: no compile happens inside it), and a
# function that died is named at once instead of leaving `cargo lambda invoke` waiting.
invoke() { # function, event file -> response on stdout
  local i
  for i in "${!functions[@]}"; do
    [[ ${functions[$i]} == "$1" ]] && { kill -0 "${fn_pids[$i]}" 2>/dev/null || fail "$1 exited (see its log)"; }
  done
  timeout 120 cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$invoke_port" \
    --data-file "$2" --output-format json </dev/null
}

# metrics-publisher: the KPL sample; afterwards the alerts table holds its severity-4 alerts.
out=$(invoke metrics-publisher events/metrics-publisher-kpl.json) || fail "metrics-publisher invoke failed: $out"
[[ $(jq -c '.batchItemFailures' <<<"$out") == "[]" ]] || fail "metrics-publisher reported failures: $out"
alerts=$(python3 - "$endpoint" "$(name AlertsTable)" <<'PY'
import sys, boto3
ddb = boto3.client("dynamodb", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
print(sum(1 for i in ddb.scan(TableName=sys.argv[2])["Items"] if i["record_type"]["S"] == "alert"))
PY
)
(( alerts > 0 )) || fail "no alerts written by metrics-publisher"
echo "metrics-publisher: ok ($alerts alerts in the table)"

# alerter: a firing alert; afterwards moto's SNS topic holds exactly one notification.
out=$(invoke alerter events/alerter-firing.json) || fail "alerter invoke failed: $out"
[[ $(jq -c '.batchItemFailures' <<<"$out") == "[]" ]] || fail "alerter reported failures: $out"
out=$(invoke alerter events/alerter-firing.json) || fail "alerter re-invoke failed: $out"
sent=$(curl -sf "$endpoint/moto-api/data.json" | jq '[.sns.Topic[].sent_notifications | length] | add')
[[ $sent == 1 ]] || fail "expected 1 SNS notification after delivering the firing event twice, moto holds $sent"
echo "alerter: ok (1 notification for 2 deliveries)"

# window-aggregator: the change-record sample, then the schedule with the wall clock long
# past its windows: they close, and the windows table holds their starts settled.
out=$(invoke window-aggregator events/window-aggregator-changes-micro.json) || fail "window-aggregator invoke failed: $out"
[[ $(jq -c '.batchItemFailures' <<<"$out") == "[]" ]] || fail "window-aggregator reported failures: $out"
out=$(invoke window-aggregator events/window-aggregator-schedule.json) || fail "window-aggregator schedule failed: $out"
closed=$(python3 - "$endpoint" "$(name WindowsTable)" <<'PY'
import sys, boto3
ddb = boto3.client("dynamodb", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
items = ddb.scan(TableName=sys.argv[2])["Items"]
# Window starts (sk "s"): settled ones are closed and out of the open-windows index.
starts = [i for i in items if i["sk"]["S"] == "s"]
print(len(starts), sum(1 for i in starts if i["closed"]["BOOL"] and "open_shard" not in i))
PY
)
read -r windows closed_count <<<"$closed"
(( windows > 0 && windows == closed_count )) || fail "expected every window start settled after the schedule, got $closed ($out)"
echo "window-aggregator: ok ($windows window starts written and closed; $(jq .windowsClosed <<<"$out") windows closed by the schedule)"
