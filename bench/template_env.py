"""Prints each function's environment as template.yaml gives it, resolved against the
resources tools/moto_resources.py created, for bench/lambda.sh.

Usage: template_env.py NAMES.json [TEMPLATE] — NAMES.json is moto_resources.py's output.
Prints JSON: {"functions": [{"crate", "logical_id", "memory_mb", "env": {...}}]}, the crate
being the function's CodeUri directory name. Parameters resolve to their defaults; the
LoggingConfig becomes AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL as Lambda sets them.
"""
import json
import os
import re
import sys

from cfnlint.decode import decode


def main():
    names = json.load(open(sys.argv[1]))
    template, matches = decode(sys.argv[2] if len(sys.argv) > 2 else "template.yaml")
    if matches:
        sys.exit("template.yaml does not decode: " + "; ".join(str(m) for m in matches))
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    pseudo = {"AWS::Region": os.environ.get("AWS_REGION", "us-east-1"), "AWS::AccountId": "123456789012",
              "AWS::StackName": "streamwatch", "AWS::Partition": "aws"}

    def ref(name):
        if name in params:
            return params[name]
        if name in pseudo:
            return pseudo[name]
        if name in names:
            return names[name]
        sys.exit(f"template_env: cannot resolve Ref {name}")

    def resolve(value):
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return ref(arg)
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(r"\$\{([^}!]+)\}",
                              lambda m: resolve(extra[m.group(1)]) if m.group(1) in extra else ref(m.group(1)),
                              text)
            if fn == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                kind = template["Resources"].get(logical, {}).get("Type")
                if kind == "AWS::Kinesis::Stream" and attr == "Arn":
                    return f"arn:aws:kinesis:{pseudo['AWS::Region']}:{pseudo['AWS::AccountId']}:stream/{ref(logical)}"
                sys.exit(f"template_env: unsupported Fn::GetAtt {logical}.{attr} in a function environment")
            if fn == "Fn::If":
                return resolve(arg[1] if condition(arg[0]) else arg[2])
            sys.exit(f"template_env: unsupported intrinsic {fn} in a function environment")
        return str(value).lower() if isinstance(value, bool) else str(value)

    def condition(name):
        """A template condition at the parameters' defaults (Fn::Equals of two values)."""
        cond = template.get("Conditions", {}).get(name)
        if not (isinstance(cond, dict) and list(cond) == ["Fn::Equals"]):
            sys.exit(f"template_env: unsupported condition {name}")
        a, b = cond["Fn::Equals"]
        return resolve(a) == resolve(b)

    globals_ = template.get("Globals", {}).get("Function", {})
    out = []
    for logical, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = {**globals_, **res["Properties"]}
        # SAM merges the Globals' variables (RUST_LOG) under the function's own.
        variables = {**globals_.get("Environment", {}).get("Variables", {}),
                     **res["Properties"].get("Environment", {}).get("Variables", {})}
        env = {k: resolve(v) for k, v in variables.items()}
        # moto takes seconds per 1,000-datum PutMetricData: a deadline sized for CloudWatch
        # would time out requests moto then applies (as `streamwatch dev run` does too).
        if "PUT_METRIC_DATA_TIMEOUT_SECONDS" in env:
            env["PUT_METRIC_DATA_TIMEOUT_SECONDS"] = str(props.get("Timeout", 3))
        logging = props.get("LoggingConfig", {})
        if "LogFormat" in logging:
            env["AWS_LAMBDA_LOG_FORMAT"] = resolve(logging["LogFormat"])
        if "ApplicationLogLevel" in logging:
            env["AWS_LAMBDA_LOG_LEVEL"] = resolve(logging["ApplicationLogLevel"])
        out.append({"crate": os.path.basename(props["CodeUri"].rstrip("/")), "logical_id": logical,
                    "function_name": resolve(props.get("FunctionName", logical)),
                    "memory_mb": int(props.get("MemorySize", 128)), "env": env})
    print(json.dumps({"functions": out}, indent=1))


if __name__ == "__main__":
    main()
