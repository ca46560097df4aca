"""Post-deploy smoke check: one turbine reading above the threshold and one severe accident
go in at the front of the deployed pipeline, and both notifications must come out of the
alerts topic; then one alarm is forced into ALARM and its notification must come out too,
which proves the KMS-encrypted topic accepts CloudWatch's publish.

Notifications are read through a temporary SQS queue subscribed to the topic (deleted
afterwards). Exit 0: all three arrived; 1: something did not arrive in time (named); 2: setup.

  python tools/smoke_check.py --stack streamwatch            # a stack `sam deploy` made
  python tools/smoke_check.py --dev-stack target/dev/stack.json --skip-alarm   # `streamwatch dev up`

The reading's window closes after the window length plus the allowed lateness, and the
schedule runs each minute: allow `--timeout` (default 300 s) for that.
"""

import argparse
import datetime
import json
import os
import sys
import time
import uuid

import boto3


def stack_resources(args):
    """(endpoint, names, parameters): the names the check needs, by logical id."""
    if args.dev_stack:
        stack = json.load(open(args.dev_stack))
        refs = {k: v.get("ref") for k, v in stack["resources"].items()}
        return stack["endpoint"], stack.get("region"), refs, stack.get("parameters", {})
    cfn = boto3.client("cloudformation")
    desc = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    params = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue"))
              for p in desc.get("Parameters", [])}
    refs = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=args.stack):
        for r in page["StackResourceSummaries"]:
            refs[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    return None, None, refs, params


def parameter(template_default, params, name):
    return params.get(name) or template_default


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="streamwatch", help="CloudFormation stack name")
    ap.add_argument("--dev-stack", help="target/dev/stack.json of `streamwatch dev up` instead")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the notifications")
    ap.add_argument("--alarm", default="DeadLetterAlarm", help="logical id of the alarm to force")
    ap.add_argument("--skip-alarm", action="store_true", help="no alarm step (emulators do not publish alarm actions)")
    args = ap.parse_args()

    endpoint, region, refs, params = stack_resources(args)
    kw = {"endpoint_url": endpoint} if endpoint else {}
    if region:
        kw["region_name"] = region
    ddb, kinesis, sns, sqs, cw = (boto3.client(s, **kw) for s in ("dynamodb", "kinesis", "sns", "sqs", "cloudwatch"))
    for needed in ("ReadingsTable", "AccidentsStream", "AlertsTopic"):
        if not refs.get(needed):
            print(f"smoke check: the stack has no {needed} (deploy with CreateDemoSources=true for the readings table)", file=sys.stderr)
            return 2
    topic = refs["AlertsTopic"]
    threshold = float(parameter(60, params, "WindSpeedThreshold"))
    severity = int(parameter(4, params, "AlertSeverity"))
    smoke = "smoke-" + uuid.uuid4().hex[:10]

    # A queue subscribed to the topic: where the check reads the notifications.
    queue_url = sqs.create_queue(QueueName=smoke)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                                 ReturnSubscriptionArn=True)["SubscriptionArn"]
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        iso = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        # The turbine simulator's item layout (DESIGN.md, "Reference turbine table").
        ddb.put_item(TableName=refs["ReadingsTable"], Item={
            "id": {"S": str(uuid.uuid4())}, "deviceID": {"S": f"{smoke}-turbine"},
            "value": {"N": str(int(threshold) + 10)}, "index": {"N": "0"},
            "createdAt": {"S": iso}, "updatedAt": {"S": iso}})
        accident = {"ID": f"{smoke}-accident", "Source": "smoke-check", "Severity": severity,
                    "Start_Time": now.strftime("%Y-%m-%dT%H:%M:%S"), "City": "Smoke", "County": "Check",
                    "State": "ZZ", "Description": "streamwatch post-deploy smoke check",
                    "Txn_Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f")}
        kinesis.put_record(StreamName=refs["AccidentsStream"], Data=json.dumps(accident).encode(),
                           PartitionKey=smoke)
        print(f"smoke check {smoke}: reading {int(threshold) + 10} mph and a severity-{severity} accident sent")

        alarm = None
        if not args.skip_alarm:
            alarm = refs.get(args.alarm)
            if not alarm:
                print(f"smoke check: the stack has no alarm {args.alarm}", file=sys.stderr)
                return 2
            cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM",
                               StateReason=f"streamwatch smoke check {smoke}")
            print(f"smoke check {smoke}: alarm {alarm} forced into ALARM")

        wanted = {"reading": lambda m: f"{smoke}-turbine" in m,
                  "accident": lambda m: f"{smoke}-accident" in m}
        if alarm:
            wanted["alarm"] = lambda m: alarm in m and "ALARM" in m
        seen = {}
        deadline = time.monotonic() + args.timeout
        while set(wanted) - set(seen) and time.monotonic() < deadline:
            wait = max(0, min(20, int(deadline - time.monotonic())))
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
            for msg in got.get("Messages", []):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
                envelope = json.loads(msg["Body"])
                text = (envelope.get("Subject") or "") + "\n" + (envelope.get("Message") or "")
                for name, match in wanted.items():
                    if name not in seen and match(text):
                        seen[name] = envelope.get("Subject") or text[:80]
                        print(f"smoke check {smoke}: {name} notification: {seen[name]}")
        missing = sorted(set(wanted) - set(seen))
        if missing:
            print(f"smoke check {smoke}: no {', '.join(missing)} notification within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        print(f"smoke check {smoke}: ok")
        return 0
    finally:
        sns.unsubscribe(SubscriptionArn=subscription)
        sqs.delete_queue(QueueUrl=queue_url)


if __name__ == "__main__":
    sys.exit(main())
