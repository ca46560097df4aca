#!/usr/bin/env python3
"""Cost per million records and per month, streamwatch beside the reference design, at the
reference loads (5 turbines at 1 Hz; the accident replay at 100 rows/s), at 100x and (the
turbines) at 1,000x.

Usage: bench/cost.py [--markdown] [--scale target/bench/window-scale.json]

The turbine pipeline's window-state writes come from `cargo bench -p window-aggregator
--bench scale`, which runs each load through the handler and bills every item written as
DynamoDB does; this script refuses to price the turbines without that file.

Inputs are the counts our benches measure (each constant names the command that measured
it) and us-east-1 on-demand list prices (PRICES, with where and when they were read).
Only what differs between the designs is priced: both pay the same for the Kinesis streams,
the readings table and its change stream, and for every custom metric-month (the same
dimensions are published either way), so those are listed once, not compared.
"""
import json
import math
import os
import sys

# --- us-east-1 list prices (USD), as read on the pages below; see docs/cost.md. ---
PRICES = {
    # aws.amazon.com/lambda/pricing (Arm, first tier), read 2026-11-28 via a copy of the page.
    "lambda_gb_s_arm": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    # aws.amazon.com/cloudwatch/pricing: PutMetricData $0.01 per 1,000 requests (last known).
    "cw_put_metric_data": 0.01 / 1000,
    # aws.amazon.com/dynamodb/pricing/on-demand after the 2024-11 cut.
    "ddb_wru": 0.625 / 1e6,
    "ddb_rru": 0.125 / 1e6,
    # aws.amazon.com/sns/pricing: standard topic publish; email deliveries $2 per 100,000.
    "sns_publish": 0.50 / 1e6,
    "sns_email": 2.00 / 1e5,
    # aws.amazon.com/managed-service-apache-flink/pricing (US East examples).
    "flink_kpu_hour": 0.11,
    "flink_storage_gb_month": 0.10,
}
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
# Lambda gives a function CPU in proportion to memory: one full vCPU at 1,769 MB. CPU-bound
# work therefore costs the same GB-s at any memory size: CPU-seconds x 1.769 GB.
GB_PER_VCPU = 1.769

# --- Measured (this repo) ---
# Accident fixture: 3,918 user records, 1,125 with Severity > 2 (metric), 321 with
# Severity >= 4 (per-event alert). `bench/decode.sh`'s fixture, counted by bench/reference_consumer.py.
ACC_SELECTED = 1125 / 3918
ACC_ALERTING = 321 / 3918
# metrics-publisher CPU per 3,918-record invocation, both as Lambda processes: `bench/lambda.sh`
# (run 3, 2026-11-28, docs/performance.md "Lambda init, warm batches and memory"): the release binary with
# batched alert writes, PutMetricData and the outbox against moto, 52.4 ms; the reference
# consumer under awslambdaric (aws_kinesis_agg + json + one boto3 put_metric_data per
# selected record), 1,986 ms.
OURS_CPU_S_PER_RECORD = 0.0524 / 3918
REF_CPU_S_PER_RECORD = 1.986 / 3918
# PutMetricData calls for a batch: one per 1,000 distinct series (series ~= selected
# records at 1 s resolution: 1,104 of 1,125 in the fixture) + 1 request of our own
# operational metrics. Measured: 3 calls for the 3,918-record fixture, 5 for 10,000 records.
SERIES_PER_SELECTED = 1104 / 1125
# window-aggregator CPU per change record, release build against moto behind a local Runtime
# API (`bench/lambda.sh`, the 10,000-record batch; see docs/cost.md): WA_CPU_S_PER_RECORD.
WA_CPU_S_PER_RECORD = 12.4e-6  # 123.5 ms CPU for 10,000 change records, 2026-12-01
# The turbine change record as Kinesis Data Streams for DynamoDB delivers it, bytes.
TURBINE_RECORD_BYTES = 600

# --- Deployment assumptions (template.yaml) ---
SHARDS = 4  # an ON_DEMAND stream starts with 4 shards; each has its own poller
MEMORY_GB = 128 / 1024  # every function: MemorySize 128
PUBLISHER_WINDOW_S = 5  # MaximumBatchingWindowInSeconds, BatchSize 10000
SCHEDULE_PER_MONTH = SECONDS_PER_MONTH / 60  # window-aggregator rate(1 minute)
NETWORK_WAIT_S = 0.020  # one AWS API round trip from Lambda (assumed, not measured)
WINDOW_S = 60
THRESHOLD_SHARE = 0.01  # share of turbine windows over 60 mph (assumed; alerts are rare)
REPEAT_INTERVAL_S = 900  # alerts on one key repeat at most every 15 minutes


def lambda_cost(invocations, cpu_s, wait_s):
    gb_s = cpu_s * GB_PER_VCPU + wait_s * MEMORY_GB
    return invocations * PRICES["lambda_request"] + gb_s * PRICES["lambda_gb_s_arm"], gb_s


def accidents(rate):
    """Per-month cost lines for the accident pipeline at `rate` records/s."""
    per_month = rate * SECONDS_PER_MONTH
    per_shard = rate / SHARDS
    # A poller invokes when its window ends or the batch is full (10,000 records).
    batch = min(per_shard * PUBLISHER_WINDOW_S, 10_000)
    invocations = per_month / max(batch, 1)
    series = batch * ACC_SELECTED * SERIES_PER_SELECTED
    calls_per_inv = math.ceil(series / 1000) + 1
    ours_calls = invocations * calls_per_inv
    ours_lambda, ours_gbs = lambda_cost(
        invocations, per_month * OURS_CPU_S_PER_RECORD, ours_calls * NETWORK_WAIT_S
    )
    ref_calls = per_month * ACC_SELECTED  # one PutMetricData per selected record
    ref_lambda, ref_gbs = lambda_cost(
        invocations, per_month * REF_CPU_S_PER_RECORD, ref_calls * NETWORK_WAIT_S
    )
    # Ours: a per-event alert for Severity >= 4 goes to the outbox, 100 at a time: one
    # strongly consistent BatchGetItem (1 RRU per item) and a BatchWriteItem of the missing
    # ones (1 WRU per item); the alerter publishes it once per key and repeat interval.
    alerts = per_month * ACC_ALERTING
    return {
        "records": per_month,
        "PutMetricData calls": (ours_calls, ref_calls),
        "PutMetricData $": (ours_calls * PRICES["cw_put_metric_data"], ref_calls * PRICES["cw_put_metric_data"]),
        "Lambda GB-s": (ours_gbs, ref_gbs),
        "Lambda $ (requests + GB-s)": (ours_lambda, ref_lambda),
        # The reference's alert threshold never fired (DESIGN.md), so it published nothing.
        "alert outbox reads + writes (RRU + WRU)": (2 * alerts, 0),
        "alerts $ (outbox RRU + WRU + SNS publish, upper bound)": (
            alerts * (PRICES["ddb_rru"] + PRICES["ddb_wru"] + PRICES["sns_publish"]),
            0,
        ),
    }


SCALE = {}  # filled from the scale bench's JSON in main()


def turbines(rate):
    """Per-month cost lines for the turbine pipeline at `rate` readings/s (= turbines at 1 Hz)."""
    load = {5: "x1", 500: "x100", 5000: "x1000"}[rate]
    m = SCALE[load]
    per_month = rate * SECONDS_PER_MONTH
    shards = m["shards"]
    # Invocations and write units scale with the measured run's per-reading figures.
    invocations = per_month * m["batches"] / m["readings"] + SCHEDULE_PER_MONTH
    wru = per_month * m["wru_per_reading"]
    windows = rate * SECONDS_PER_MONTH / WINDOW_S
    alerts = windows * THRESHOLD_SHARE
    ours_lambda, ours_gbs = lambda_cost(
        invocations, per_month * WA_CPU_S_PER_RECORD, invocations * 4 * NETWORK_WAIT_S
    )
    # The reference: a Flink application, 1 KPU (1 vCPU, 4 GB) of parallelism per started
    # 2,500 records/s (JSON change records deserialised, RocksDB window state, checkpoints:
    # an assumption, not a measurement; at the reference load one KPU idles) plus the
    # orchestration KPU, with 50 GB running storage per KPU; a Python Lambda per alert.
    kpus = 1 + math.ceil(rate / 2500)
    flink = (kpus * HOURS_PER_MONTH * PRICES["flink_kpu_hour"]
             + (kpus - 1) * 50 * PRICES["flink_storage_gb_month"])
    return {
        "records": per_month,
        "shards / Flink KPUs": (shards, kpus),
        "window state writes (WRU, measured per reading)": (wru, 0),
        "window state $": (wru * PRICES["ddb_wru"], 0),
        "Lambda GB-s": (ours_gbs, 0),
        "Lambda $ / Flink $": (ours_lambda, flink),
        "alerts: SNS publishes": (alerts, alerts),
        "alerts $ (SNS + email)": (
            alerts * (PRICES["sns_publish"] + PRICES["sns_email"] + PRICES["ddb_wru"]),
            alerts * (PRICES["sns_publish"] + PRICES["sns_email"]),
        ),
    }


def load_scale(path):
    if not os.path.exists(path):
        sys.exit(f"cost.py: {path} not found: run `cargo bench -p window-aggregator --bench scale` first")
    with open(path) as f:
        SCALE.update(json.load(f))


def main():
    md = "--markdown" in sys.argv
    scale = "target/bench/window-scale.json"
    if "--scale" in sys.argv:
        scale = sys.argv[sys.argv.index("--scale") + 1]
    load_scale(scale)
    loads = [("accidents", accidents, [100, 10_000]), ("turbines", turbines, [5, 500, 5000])]
    head = ["ours 1x", "reference 1x", "ours 100x", "reference 100x", "ours 1000x", "reference 1000x"]
    if md:
        print("| pipeline | component | " + " | ".join(head) + " |")
        print("|---|---|" + "---|" * len(head))
    else:
        print(f"{'':9} {'per month':50} " + " ".join(f"{h:>16}" for h in head))
    for name, model, rates in loads:
        data = [model(r) for r in rates]
        for key in data[0]:
            if key == "records":
                continue
            fmt = (lambda v: f"${v:,.2f}") if "$" in key else (lambda v: f"{v:,.0f}")
            cells = []
            for d in data:
                cells += [fmt(d[key][0]), fmt(d[key][1])]
            cells += [""] * (len(head) - len(cells))
            label = key if key.startswith("shards") else f"{key} /month"
            if md:
                print(f"| {name} | {label} | " + " | ".join(cells) + " |")
            else:
                print(f"{name:9} {label:50} " + " ".join(f"{c:>16}" for c in cells))
        # The money lines summed, per month and per million records.
        cells = []
        for d in data:
            per_m = 1e6 / d["records"]
            for side in (0, 1):
                total = sum(v[side] for k, v in d.items() if "$" in k)
                cells.append(f"${total:,.2f} (${total * per_m:.4f}/M)")
        cells += [""] * (len(head) - len(cells))
        if md:
            print(f"| {name} | **total $/month ($ per million records)** | " + " | ".join(cells) + " |")
        else:
            print(f"{name:9} {'total $/month ($ per million records)':50} " + "  ".join(cells))


if __name__ == "__main__":
    main()
