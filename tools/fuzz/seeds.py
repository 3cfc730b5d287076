#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into tests/fuzz/<target>/corpus/.

Seeds come from the vendored fixtures (tests/fixtures/decode, themselves
copies of the shared conformance samples), hand-written hostile values, and,
for the file readers, a data directory written by the real binary:

    gapless demo --meters 20 --data /tmp/fuzz-demo
    tools/fuzz/seeds.py /tmp/fuzz-demo /work/shared/conformance

Journal segments are built here from the documented record format
(src/journal.rs) so that they stay small: whole, torn, corrupted.
The fuzzers grow the corpus from these; `cargo fuzz cmin` keeps it small.
"""
import json, os, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "decode")
OUT = os.path.join(ROOT, "tests", "fuzz")
SEP = b"\n----\n"


def put(target, name, data):
    d = os.path.join(OUT, target, "corpus")
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def tree(files):
    """The fuzz targets' directory container: path line, bytes, separator."""
    return SEP.join(p.encode() + b"\n" + (b if isinstance(b, bytes) else b.encode()) for p, b in files)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record(seq, ts, topic, payload):
    t = topic.encode()
    body = struct.pack("<QqH", seq, ts, len(t)) + t + payload
    return struct.pack("<II", len(body), crc32c(body)) + body


def commit(records):
    """Records of one commit, padded like the journal pads them."""
    b = b"".join(records)
    end = len(b)
    if end % 4096:
        end = -(-(end + 8) // 4096) * 4096
    return b + b"\0" * (end - len(b))


def native(meter, value, ts, seq):
    return json.dumps({"meter_id": meter, "medium": "water", "register": "total",
                       "unit": "m3", "value": value, "ts": ts, "seq": seq}).encode()


def main():
    demo = sys.argv[1] if len(sys.argv) > 1 else None

    # Decoders.
    ok = native("HZ-1", "326.070", "2024-01-01T00:00:00Z", 7)
    put("decode_native", "one", ok)
    put("decode_native", "array", b"[" + ok + b"," + native("HZ-2", "1.5e3", "2024-01-01T00:15:00+01:00", 8) + b"]")
    put("decode_native", "number-value", '{"meter_id":"M.1","medium":"heat","register":"energy","unit":"kWh","value":1234.567,"ts":"2025-06-01T12:00:00.123456Z","kind":"set_date"}')
    put("decode_native", "hostile-exponent", native("HZ-1", "0e200000000", "2024-01-01T00:00:00Z", 1))
    put("decode_native", "hostile-exponent-num", '{"meter_id":"HZ-1","medium":"water","unit":"m3","value":1e-2147483648,"ts":"2024-01-01T00:00:00Z"}')
    put("decode_native", "deep", "[" * 200 + "]" * 200)
    for i, line in enumerate(open(os.path.join(FIX, "wmbusmeters_samples.jsonl"))):
        if line.strip():
            put("decode_wmbusmeters", f"fixture-{i:02}", line.strip())
    for name in ("chirpstack_up.json", "tts_up.json"):
        put("decode_lorawan", name, open(os.path.join(FIX, name), "rb").read())

    # The shared conformance samples, when present (copied: CI reads only tests/).
    conf = sys.argv[2] if len(sys.argv) > 2 else None
    if conf:
        for i, line in enumerate(open(os.path.join(conf, "wmbusmeters_samples.jsonl"))):
            if line.strip():
                put("decode_wmbusmeters", f"conformance-{i:02}", line.strip())
        for k, v in json.load(open(os.path.join(conf, "lorawan_samples.json"))).items():
            if isinstance(v, dict) and "payload" in v:
                put("decode_lorawan", "conformance-" + k, json.dumps(v["payload"]))

    # The decimal parser.
    for i, v in enumerate(["326.070", "0", "-1.5", "1.5E-3", "1e3", "0.000000001", "99999999999999999999999999999",
                           "0e200000000", "1e-2147483648", "-0e2147483647", "1e100", "1e-100", "+12.", ".5",
                           "1" * 60, "0." + "0" * 40 + "1e40"]):
        put("decimal", f"{i:02}", v)

    # The registry (schemas/registry.md).
    put("registry", "plain", "meter_id,medium,expected_interval_s,group,installed_at,removed_at\n"
        "HZ-000123,heat,900,building-7,2021-01-01,\nWZ-1,water,,,,\n")
    put("registry", "replacement", "meter_id,medium,expected_interval_s,group,installed_at,removed_at,seq_wrap,alert_after_s\n"
        "HZ-1,heat,900,b,2021-01-01,2023-05-01T10:00:00Z,256,3600\nHZ-1,heat,900,b,2023-05-01T10:00:00Z,,256,3600\n")

    # The config file.
    put("config", "full", 'broker = "mqtts://broker.example:8883"\ntopics = ["meters/#"]\nclient_id = "c"\n'
        'data = "/tmp/x"\nusername = "u"\nmax_payload_bytes = 1000\nmax_future_skew_s = 60\n'
        'seal_max_rows = 10\nseal_max_age_s = 1.5\ncompact_every_s = 60.0\ncompact_grace_s = 10\n'
        'http = "127.0.0.1:0"\napi_token = "t"\n[[formats]]\nfilter = "lora/#"\nformat = "chirpstack"\n'
        '[continuity]\n[alerts]\n')
    put("config", "empty", "")
    put("config", "typo", 'brokr = "x"\n')

    # Journal segments: whole, torn, corrupted, two segments, a hole.
    recs = [record(i, 1_700_000_000_000_000 + i, f"meters/{i}", native(f"M-{i}", str(i), "2024-01-01T00:00:00Z", i)) for i in range(1, 4)]
    seg1 = commit(recs[:2]) + commit(recs[2:])
    name = lambda first: f"seg-{first:020}.log"
    put("journal_replay", "whole", tree([(name(1), seg1)]))
    put("journal_replay", "torn", tree([(name(1), seg1[:4096] + recs[2][:20])]))
    bad = bytearray(seg1)
    bad[30] ^= 0xFF
    put("journal_replay", "corrupt", tree([(name(1), bytes(bad))]))
    put("journal_replay", "two", tree([(name(1), commit(recs[:2])), (name(3), commit(recs[2:]))]))
    put("journal_replay", "hole", tree([(name(1), commit(recs[:1])), (name(3), commit(recs[2:]))]))
    put("journal_replay", "empty", tree([(name(1), b"")]))

    if demo:
        cdir = os.path.join(demo, "_commits")
        ms = sorted(os.listdir(cdir))
        put("commit_log", "demo", tree([("_commits/" + m, open(os.path.join(cdir, m), "rb").read()) for m in ms]))
        put("commit_log", "demo-first", tree([("_commits/" + ms[0], open(os.path.join(cdir, ms[0]), "rb").read())]))
        led = os.path.join(demo, "_ledger")
        files = [("_state/audit.key", open(os.path.join(demo, "_state/audit.key"), "rb").read())]
        files.append(("_ledger/head.json", open(os.path.join(led, "head.json"), "rb").read()))
        for sub in ("entries", "checkpoints"):
            for n in sorted(os.listdir(os.path.join(led, sub))):
                files.append((f"_ledger/{sub}/{n}", open(os.path.join(led, sub, n), "rb").read()))
        put("ledger", "demo", tree(files))
        put("ledger", "demo-small", tree(files[:3] + [f for f in files if f[0].startswith("_ledger/checkpoints")][:1]))


main()
