"""Creates the template's tables, streams, topic and queues in an AWS API endpoint (moto,
LocalStack), reading template.yaml itself so there is no second copy to drift.

Usage: moto_resources.py ENDPOINT [TEMPLATE]   — prints the physical names as JSON,
keyed by logical id (tables and streams by name, the topic by ARN, queues by URL).
"""
import json
import os
import sys

import boto3
import botocore.config
from cfnlint.decode import decode


def main():
    endpoint = sys.argv[1]
    template, matches = decode(sys.argv[2] if len(sys.argv) > 2 else "template.yaml")
    if matches:
        sys.exit("template.yaml does not decode: " + "; ".join(str(m) for m in matches))
    # No retries: an emulator's "not implemented" should not cost seconds of backoff.
    config = botocore.config.Config(retries={"max_attempts": 1})
    kw = dict(config=config, endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"),
              aws_access_key_id="testing", aws_secret_access_key="testing")
    ddb, kinesis, sns, sqs = (boto3.client(s, **kw) for s in ("dynamodb", "kinesis", "sns", "sqs"))
    names = {}
    resources = template["Resources"]
    for logical, res in resources.items():
        kind, props = res["Type"], res.get("Properties", {})
        name = f"streamwatch-{logical}"
        if kind == "AWS::Kinesis::Stream":
            kinesis.create_stream(StreamName=name, ShardCount=2)
            names[logical] = name
        elif kind == "AWS::SNS::Topic":
            names[logical] = sns.create_topic(Name=name)["TopicArn"]
        elif kind == "AWS::SQS::Queue":
            names[logical] = sqs.create_queue(QueueName=name)["QueueUrl"]
    for logical, res in resources.items():
        if res["Type"] != "AWS::DynamoDB::Table":
            continue
        props = res["Properties"]
        name = f"streamwatch-{logical}"
        args = dict(TableName=name, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=props["AttributeDefinitions"], KeySchema=props["KeySchema"])
        if "GlobalSecondaryIndexes" in props:
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ddb.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        spec = props.get("KinesisStreamSpecification")
        if spec:
            stream = spec["StreamArn"]["Fn::GetAtt"][0]
            arn = kinesis.describe_stream_summary(StreamName=names[stream])["StreamDescriptionSummary"]["StreamARN"]
            try:
                ddb.enable_kinesis_streaming_destination(TableName=name, StreamArn=arn)
            except ddb.exceptions.ClientError as e:
                # moto 5.2 answers 500 (not implemented); LocalStack and AWS take it.
                print(f"note: {name}: Kinesis streaming destination not enabled by this endpoint "
                      f"({e.response['Error'].get('Code', 'error')}); readings must be put on the stream directly",
                      file=sys.stderr)
        names[logical] = name
    print(json.dumps(names, indent=1))


if __name__ == "__main__":
    main()
