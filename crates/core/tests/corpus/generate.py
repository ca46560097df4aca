#!/usr/bin/env python3
"""Writes the seed files of the hostile-input corpus (crates/core/tests/corpus/<target>/).

Seeds come from the shared fixtures plus hand-made adversarial cases. Inputs that once
broke something are added by hand as `regression-*` files and are never generated, so
re-running this script leaves them alone. Run from the repository root:
    python3 crates/core/tests/corpus/generate.py
"""
import base64, hashlib, json, os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)))
MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def wrap(msg):
    return MAGIC + msg + hashlib.md5(msg).digest()


def field(n, wire, body=b""):
    return varint((n << 3) | wire) + body


def ld(n, data):
    return field(n, 2, varint(len(data)) + data)


def fixture(name):
    with open(os.path.join(ROOT, "../../../../tests/fixtures", name)) as f:
        return json.load(f)


# --- kpl: Kinesis data blobs
for i, r in enumerate(fixture("kinesis-kpl-edge-cases.json")["Records"]):
    put("kpl", f"fixture-edge-{i}.bin", base64.b64decode(r["kinesis"]["data"]))
rec = field(1, 0, varint(0)) + ld(3, b'{"Severity":4}')
put("kpl", "valid-one-record.bin", wrap(ld(1, b"pk") + ld(3, rec)))
put("kpl", "length-4gib-table.bin", wrap(field(1, 2, varint(4 << 30)) + b"short"))
put("kpl", "length-4gib-data.bin", wrap(ld(1, b"k") + ld(3, field(1, 0, b"\x00") + field(3, 2, varint(4 << 30)))))
put("kpl", "length-max-u64.bin", wrap(field(3, 2, b"\xff" * 9 + b"\x01")))
put("kpl", "varint-11-bytes.bin", wrap(b"\x0a" + b"\xff" * 11))
put("kpl", "field-zero.bin", wrap(b"\x02\x00"))
put("kpl", "group-wire-type.bin", wrap(field(3, 3) + field(3, 4)))
put("kpl", "pk-index-huge.bin", wrap(ld(1, b"k") + ld(3, field(1, 0, varint(1 << 63)) + ld(3, b""))))
put("kpl", "ehk-index-out-of-range.bin", wrap(ld(1, b"k") + ld(3, field(1, 0, b"\x00") + field(2, 0, b"\x05") + ld(3, b""))))
put("kpl", "missing-data.bin", wrap(ld(1, b"k") + ld(3, field(1, 0, b"\x00"))))
put("kpl", "invalid-utf8-key.bin", wrap(ld(1, b"\xff\xfe") + ld(3, rec)))
put("kpl", "tag-truncated.bin", wrap(ld(1, b"k") + ld(3, field(1, 0, b"\x00") + ld(3, b"x") + ld(4, b"\x0a\x09ab"))))
put("kpl", "magic-only.bin", MAGIC)
put("kpl", "magic-plus-digest.bin", MAGIC + b"\x00" * 16)
put("kpl", "bad-digest.bin", wrap(ld(1, b"pk") + ld(3, rec))[:-1] + b"\x00")
put("kpl", "empty.bin", b"")

# --- change: change-record payloads
for i, r in enumerate(fixture("kinesis-windspeed-changes.json")["Records"][:6]):
    put("change", f"fixture-windspeed-{i}.json", base64.b64decode(r["kinesis"]["data"]))


def change(new_image, ts=1795262400000000, precision="MICROSECOND"):
    d = {"ApproximateCreationDateTime": ts, "Keys": {"id": {"S": "k"}}, "NewImage": new_image}
    if precision:
        d["ApproximateCreationDateTimePrecision"] = precision
    return json.dumps({"eventID": "e", "eventName": "INSERT", "eventSource": "aws:dynamodb", "dynamodb": d})


put("change", "deep-m-200.json", change({"x": json.loads("{}")}).replace('"x": {}', '"x": ' + '{"M":{"a":' * 200 + '{"N":"1"}' + "}}" * 200))
put("change", "deep-l-200.json", change({"x": json.loads("{}")}).replace('"x": {}', '"x": ' + '{"L":[' * 200 + '{"N":"1"}' + "]}" * 200))
put("change", "deep-m-60.json", change({"x": json.loads("{}")}).replace('"x": {}', '"x": ' + '{"M":{"a":' * 60 + '{"N":"1"}' + "}}" * 60))
put("change", "ts-1e400.json", change({}, ts=0).replace('"ApproximateCreationDateTime": 0', '"ApproximateCreationDateTime": 1e400'))
put("change", "ts-u64-max.json", change({}, ts=18446744073709551615))
put("change", "ts-negative.json", change({}, ts=-1, precision=None))
put("change", "ts-seconds-far.json", change({}, ts=9.3e12, precision="SECOND"))
put("change", "n-400-digits.json", change({"value": {"N": "9" * 400}}))
put("change", "n-not-a-number.json", change({"value": {"N": "sixty"}}))
put("change", "b-bad-base64.json", change({"value": {"B": "not base64!"}}))
put("change", "two-tags.json", change({"value": {"S": "a", "N": "1"}}))
put("change", "unknown-tag.json", change({"value": {"Z": "1"}}))
put("change", "empty-attribute.json", change({"value": {}}))
put("change", "eventname-unknown.json", change({}).replace("INSERT", "UPSERT"))
put("change", "dynamodb-missing.json", '{"eventID":"e","eventName":"INSERT"}')

# --- json: user-record payloads
for i, r in enumerate(fixture("kinesis-accidents-plain.json")["Records"][:4]):
    put("json", f"fixture-accident-{i}.json", base64.b64decode(r["kinesis"]["data"]))
put("json", "deep-array-200.json", '{"a":' + "[" * 200 + "]" * 200 + ',"Severity":4}')
put("json", "deep-object-200.json", '{"a":' + '{"a":' * 200 + "1" + "}" * 200 + ',"Severity":4}')
put("json", "severity-huge.json", '{"Severity":1e400}')
put("json", "severity-string.json", '{"Severity":"high","City":"x"}')
put("json", "duplicate-keys.json", '{"Severity":1,"Severity":4}')
put("json", "escapes.json", '{"City":"\\u0000\\ud800\\n\\"","Severity":4}')
put("json", "lone-surrogate.json", '{"City":"\\ud800","Severity":4}')
put("json", "invalid-utf8.json", b'{"City":"\xff\xfe","Severity":4}')
put("json", "bom.json", b"\xef\xbb\xbf{}")
put("json", "trailing.json", '{"Severity":4} {}')
put("json", "not-object.json", '[{"Severity":4}]')
put("json", "items-index.json", '{"items":[{"name":"a"},{"name":{"x":[1,2]}}],"a":[[0,{"b":2}]]}')

# --- path: field-path texts
for i, p in enumerate(["Severity", "a.b[2][0].c", "a..b", "a[", "a[18446744073709551616]", "[0]", "a[0]b", "é[1].ü", ".", "a[-1]"]):
    put("path", f"path-{i}.txt", p)

# --- csv: one data row each under the sample's header
with open(os.path.join(ROOT, "../../../../tests/fixtures/us-accidents-sample.csv"), newline="") as f:
    lines = f.read().split("\n")
for i, line in enumerate(lines[1:4]):
    put("csv", f"sample-{i}.csv", line)
put("csv", "short-row.csv", "A-1,MapQuest,3")
put("csv", "severity-word.csv", "A-1,MapQuest,high")
put("csv", "bad-time.csv", "A-1,MapQuest,3,yesterday")
put("csv", "nan-lat.csv", "A-1,MapQuest,3,2/8/2016 0:37,2/8/2016 1:37,NaN")
put("csv", "empty.csv", "")

# --- event: Lambda Kinesis envelopes
events = os.path.join(ROOT, "../../../../events")
for name in ["metrics-publisher-kpl.json", "metrics-publisher-bad-input.json", "window-aggregator-changes-milli.json", "window-aggregator-json.json"]:
    with open(os.path.join(events, name), "rb") as f:
        put("event", name, f.read())
put("event", "records-not-array.json", '{"Records":{}}')
put("event", "data-not-base64.json", '{"Records":[{"kinesis":{"data":"!!","sequenceNumber":"1"},"eventID":"s:1"}]}')
put("event", "no-data.json", '{"Records":[{"kinesis":{"sequenceNumber":"1"}}]}')
put("event", "arrival-huge.json", '{"Records":[{"kinesis":{"data":"e30=","approximateArrivalTimestamp":1e300}}]}')
put("event", "truncated.json", '{"Records":[{"kinesis":{"data":"e30')
