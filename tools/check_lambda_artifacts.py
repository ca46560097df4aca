"""Checks what `sam build` left in a build dir, as Lambda will run it: each function of the
template has an executable ELF `bootstrap` for the requested architecture, and its deployment
zip (made here the way `sam deploy` makes it: deflate, the folder's files at the root) is
under the size limit. Prints one line per function.

usage: check_lambda_artifacts.py BUILD_DIR ARCHITECTURE [MAX_ZIP_MB]
"""

import io
import os
import struct
import sys
import zipfile

# ELF e_machine values: what Lambda's arm64 and x86_64 runtimes execute.
MACHINES = {"arm64": 183, "x86_64": 62}


def main():
    build_dir, arch = sys.argv[1], sys.argv[2]
    max_mb = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    # The built template names the functions (yaml comes with cfn-lint in .venv; SAM's
    # short-form tags are irrelevant here and load as plain values).
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(build_dir, "template.yaml")) as f:
        template = yaml.load(f, Loader=Loader)
    names = sorted(n for n, r in template["Resources"].items()
                   if r.get("Type") == "AWS::Serverless::Function")
    failures = []
    if not names:
        failures.append(f"{build_dir}: no function folders")
    for name in names:
        path = os.path.join(build_dir, name, "bootstrap")
        if not os.path.isfile(path):
            failures.append(f"{name}: no bootstrap in {os.path.dirname(path)}")
            continue
        if not os.access(path, os.X_OK):
            failures.append(f"{name}: bootstrap is not executable")
        with open(path, "rb") as f:
            head = f.read(20)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            failures.append(f"{name}: bootstrap is not a 64-bit ELF file")
            continue
        machine = struct.unpack("<H", head[18:20])[0]
        if machine != MACHINES[arch]:
            failures.append(f"{name}: bootstrap is for ELF machine {machine}, not {arch} ({MACHINES[arch]})")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for root, _, files in os.walk(os.path.join(build_dir, name)):
                for file in files:
                    full = os.path.join(root, file)
                    z.write(full, os.path.relpath(full, os.path.join(build_dir, name)))
        mb = len(buf.getvalue()) / 1048576
        print(f"{name:28} {arch:7} bootstrap {os.path.getsize(path) / 1048576:6.2f} MB, zip {mb:5.2f} MB")
        if mb >= max_mb:
            failures.append(f"{name}: zip is {mb:.2f} MB, the limit is {max_mb} MB")
    for f in failures:
        print(f"check_lambda_artifacts: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
