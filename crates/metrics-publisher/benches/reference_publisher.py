"""The reference Python consumer's per-invocation work, minus the network: de-aggregate
(aws_kinesis_agg), base64, json.loads, and one boto3 PutMetricData call per selected record
(Severity > 2, dimensions severity/city/county), each serialised and SigV4-signed by
botocore and answered by a canned 200 response from a `before-send` hook instead of AWS.

Usage: reference_publisher.py EVENT.json [RUNS] — prints one JSON line: median CPU seconds
per invocation and the PutMetricData calls made. Needs boto3 and aws-kinesis-agg importable
(e.g. the workspace .venv plus bench/.venv's site-packages on PYTHONPATH).
"""
import base64
import json
import sys
import time

import boto3
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.awsrequest import AWSResponse

CALLS = 0


class _Raw:
    def stream(self, **_):
        yield b""


def canned(request, **_):
    global CALLS
    CALLS += 1
    body = (b'<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
            b"<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></PutMetricDataResponse>")
    response = AWSResponse(request.url, 200, {}, _Raw())
    response._content = body
    return response


def client():
    cw = boto3.client("cloudwatch", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    cw.meta.events.register("before-send.cloudwatch.PutMetricData", canned)
    return cw


def invocation(cw, raw):
    event = json.loads(raw)
    for record in iter_deaggregate_records(event["Records"]):
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if payload["Severity"] > 2:
            cw.put_metric_data(
                Namespace="streamwatch/accidents",
                MetricData=[{
                    "MetricName": "accidents",
                    "Dimensions": [
                        {"Name": "severity_accident", "Value": str(payload["Severity"])},
                        {"Name": "city_accident", "Value": payload["City"]},
                        {"Name": "county_accident", "Value": payload["County"]},
                    ],
                    "Value": 1,
                    "Unit": "Count",
                    "StorageResolution": 1,
                }],
            )
        if payload["Severity"] > 4:  # the reference's email threshold, never true on 1-4
            pass


def main():
    global CALLS
    raw = open(sys.argv[1], "rb").read()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cw = client()
    cpu = []
    for _ in range(runs):
        CALLS = 0
        start = time.process_time()
        invocation(cw, raw)
        cpu.append(time.process_time() - start)
    cpu.sort()
    print(json.dumps({"impl": "python-reference", "runs": runs, "cpu_s_median": cpu[len(cpu) // 2],
                      "put_metric_data_calls": CALLS}))


if __name__ == "__main__":
    main()
