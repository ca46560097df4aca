"""Translates template.yaml (AWS SAM) to plain CloudFormation JSON, offline.

cfn-lint 1.x checks AWS::Serverless::* resources only against their own schema, so wrong
enum values or ranges inside them pass; linting the translation catches those too.
Usage: sam_translate.py TEMPLATE OUT.json        (translated to CloudFormation)
       sam_translate.py --raw TEMPLATE OUT.json  (the SAM template itself as JSON, for tests)
"""
import json
import os
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoIamPolicies:
    """The template gives every function an explicit role, so no managed policy is looked up."""

    def load(self):
        return {}


def main():
    raw = sys.argv[1] == "--raw"
    src, out = sys.argv[-2], sys.argv[-1]
    # The translator fills AWS::Region from the environment; any region will do offline.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(src)
    if matches:
        for m in matches:
            print(m, file=sys.stderr)
        sys.exit(1)
    if raw:
        with open(out, "w") as fh:
            json.dump(template, fh, indent=1, default=str)
        return
    # `sam package` would upload local code and put S3 URIs here; do the same with dummies.
    for name, res in template.get("Resources", {}).items():
        props = res.get("Properties", {})
        uri = props.get("CodeUri")
        if res.get("Type") == "AWS::Serverless::Function" and isinstance(uri, str) and not uri.startswith("s3://"):
            props["CodeUri"] = f"s3://streamwatch-lint/{name}.zip"
    translated = transform(template, {}, NoIamPolicies())
    with open(out, "w") as fh:
        json.dump(translated, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
