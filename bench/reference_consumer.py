"""The reference consumer's decode path, timed: aws_kinesis_agg's de-aggregator, base64
and json.loads, then the same four fields streamwatch's bench extracts.

Usage: reference_consumer.py EVENT.json [RUNS] — prints one JSON line, median records/s.
"""
import base64
import json
import sys
import time

from aws_kinesis_agg.deaggregator import iter_deaggregate_records

FIELDS = ("Severity", "City", "County", "Txn_Timestamp")


def one_pass(raw):
    event = json.loads(raw)
    records = 0
    checksum = 0.0
    for record in iter_deaggregate_records(event["Records"]):
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
        checksum += float(payload.get("Severity") or 0)
        for field in FIELDS[1:]:
            payload.get(field)
        records += 1
    return records, checksum


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    raw = open(path, "rb").read()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        records, checksum = one_pass(raw)
        rates.append(records / (time.perf_counter() - start))
    rates.sort()
    print(json.dumps({"impl": "python-reference", "records": records, "runs": runs,
                      "records_per_s": round(rates[len(rates) // 2]), "checksum": checksum}))


if __name__ == "__main__":
    main()
