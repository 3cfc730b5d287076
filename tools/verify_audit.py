#!/usr/bin/env python3
"""An independent verifier of a gapless data directory, written from
schemas/AUDIT.md alone (no gapless code): pyarrow to read Parquet, hashlib for
SHA-256, and `cryptography` for Ed25519.

usage: verify_audit.py DATA_DIR PUBKEY_FILE [--witness VKEY_FILE]... [--min-cosignatures N]
PUBKEY_FILE holds the C2SP verifier key (`gapless audit pubkey` prints it).
A VKEY_FILE holds a witness's key (`gapless witness` prints it): the newest
checkpoint must then carry a valid C2SP cosignature/v1 by N of them (default 1).
Exit 0 when everything holds; otherwise prints every finding and exits 1.
"""

import base64
import hashlib
import json
import os
import sys
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def lh(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def nh(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return nh(mth(leaves[:k]), mth(leaves[k:]))


def column_values(col: pa.ChunkedArray, typ: pa.DataType):
    """Python values ready to encode (timestamps as integer µs)."""
    if pa.types.is_timestamp(typ):
        return col.cast(pa.int64()).to_pylist()
    return col.to_pylist()


def encode(value, typ: pa.DataType) -> bytes:
    if value is None:
        return b"\x00"
    if pa.types.is_boolean(typ):
        body = b"\x01" if value else b"\x00"
    elif pa.types.is_int64(typ) or pa.types.is_timestamp(typ):
        body = int(value).to_bytes(8, "big", signed=True)
    elif pa.types.is_unsigned_integer(typ):
        body = int(value).to_bytes(8, "big")
    elif pa.types.is_decimal(typ):
        unscaled = int(Decimal(value).scaleb(typ.scale))
        body = unscaled.to_bytes(16, "big", signed=True)
    elif pa.types.is_string(typ):
        raw = value.encode("utf-8")
        body = len(raw).to_bytes(4, "big") + raw
    elif pa.types.is_binary(typ):
        body = len(value).to_bytes(4, "big") + value
    else:
        raise ValueError(f"type {typ} has no canonical encoding")
    return b"\x01" + body


def row_hashes(table: pa.Table):
    cols = [(column_values(table.column(i), f.type), f.type) for i, f in enumerate(table.schema)]
    return [
        lh(b"".join(encode(values[r], typ) for values, typ in cols)) for r in range(table.num_rows)
    ]


def parse_vkey(text: str):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("not an Ed25519 verifier key")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    if expected != key_id:
        raise ValueError("key id does not match")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def verify_checkpoint(note: str, name: str, key_id: bytes, key):
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError(f"malformed signature line {line!r}")
        who, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if who != name or blob[:4] != key_id:
            continue
        try:
            key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise ValueError("signature does not verify")
        origin, size, root = body.splitlines()
        if origin != name:
            raise ValueError("origin is not the key's name")
        return int(size), base64.b64decode(root)
    raise ValueError(f"no signature by {name}")


def parse_witness_vkey(text: str):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if len(raw) != 33 or raw[0] != 0x04:
        raise ValueError("not a cosignature/v1 (type 0x04) witness key")
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() != key_id:
        raise ValueError("witness key id does not match")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def check_cosignature(line: str, body: str, name: str, key_id: str, key) -> bool:
    """One signature line: a valid cosignature/v1 of `body` by this witness."""
    if not line.startswith("\u2014 "):
        return False
    who, blob = line[2:].strip().split(" ", 1)
    blob = base64.b64decode(blob)
    if who != name or blob[:4].hex() != key_id or len(blob) != 76:
        return False
    ts = int.from_bytes(blob[4:12], "big")
    try:
        key.verify(blob[12:], f"cosignature/v1\ntime {ts}\n{body}".encode())
    except InvalidSignature:
        return False
    return True


def main() -> int:
    args, witness_files, min_cosigs = sys.argv[1:], [], 1
    positional = []
    while args:
        a = args.pop(0)
        if a == "--witness" and args:
            witness_files.append(args.pop(0))
        elif a == "--min-cosignatures" and args:
            min_cosigs = int(args.pop(0))
        else:
            positional.append(a)
    if len(positional) != 2:
        print("usage: verify_audit.py DATA_DIR PUBKEY_FILE [--witness VKEY_FILE]... [--min-cosignatures N]", file=sys.stderr)
        return 2
    data, pubkey_file = positional
    findings = []
    name, key_id, key = parse_vkey(open(pubkey_file).read())

    # 1. Entries 0..n.
    edir = os.path.join(data, "_ledger", "entries")
    indices = sorted(int(f[:-5]) for f in os.listdir(edir) if f.endswith(".json"))
    n = indices[-1] + 1 if indices else 0
    leaves, entries = [], []
    for i in range(n):
        path = os.path.join(edir, f"{i:012d}.json")
        if not os.path.exists(path):
            findings.append(f"ledger entry {i}: missing")
            leaves.append(b"\x00" * 32)
            continue
        raw = open(path, "rb").read()
        leaves.append(lh(raw))
        entry = json.loads(raw)
        if entry["index"] != i:
            findings.append(f"ledger entry {i}: holds the entry of index {entry['index']}")
        else:
            entries.append(entry)

    # 2. Checkpoints.
    cdir = os.path.join(data, "_ledger", "checkpoints")
    newest = -1
    for f in sorted(os.listdir(cdir)):
        if not f.endswith(".txt"):
            continue
        try:
            size, root = verify_checkpoint(open(os.path.join(cdir, f)).read(), name, key_id, key)
        except ValueError as e:
            findings.append(f"checkpoint {f}: {e}")
            continue
        if int(f[:-4]) != size:
            findings.append(f"checkpoint {f}: signs a tree of {size}")
        if size > n:
            findings.append(f"checkpoint {f}: signs {size} entries, the ledger has {n}")
        elif mth(leaves[:size]) != root:
            findings.append(f"checkpoint {f}: root does not match entries 0..{size}")
        newest = max(newest, size)
    if newest < n:
        findings.append(f"checkpoints: the newest valid one signs {max(newest, 0)} of {n} entries")

    # Witnesses: cosignatures beside the checkpoints, <size>.<key id>.cosig.
    if witness_files:
        witnesses = [parse_witness_vkey(open(w).read()) for w in witness_files]
        cosigned = {}
        for f in sorted(os.listdir(cdir)):
            if not f.endswith(".cosig"):
                continue
            size_text, wid = f[: -len(".cosig")].split(".", 1)
            for name_w, key_id_w, key_w in witnesses:
                if wid != key_id_w:
                    continue
                cp = os.path.join(cdir, f"{size_text}.txt")
                if not os.path.exists(cp):
                    findings.append(f"cosignature {f}: its checkpoint was removed")
                    continue
                body = open(cp).read().partition("\n\n")[0] + "\n"
                if not any(check_cosignature(l, body, name_w, key_id_w, key_w) for l in open(os.path.join(cdir, f)).read().splitlines()):
                    findings.append(f"cosignature {f}: does not verify (forged, or the checkpoint was altered)")
                    continue
                cosigned.setdefault(int(size_text), set()).add(key_id_w)
        witnessed = max((s for s, w in cosigned.items() if len(w) >= min_cosigs), default=None)
        if witnessed is None:
            findings.append(f"witnesses: no checkpoint cosigned by {min_cosigs} of {len(witnesses)}")
        elif witnessed < newest:
            findings.append(f"witnesses: the newest checkpoint ({newest} entries) is not cosigned; the newest cosigned one signs {witnessed}")

    # 3. Files.
    receipts, reading_receipts, reject_receipts = {}, set(), set()
    tables, row_hashes_of, compactions = {e["path"]: e["table"] for e in entries}, {}, []
    for e in entries:
        path = os.path.join(data, e["path"])
        if not os.path.exists(path):
            findings.append(f"{e['path']}: missing")
            continue
        raw = open(path, "rb").read()
        if len(raw) != e["size"] or hashlib.sha256(raw).hexdigest() != e["sha256"]:
            findings.append(f"{e['path']}: size or SHA-256 differs from the ledger")
        pf = pq.ParquetFile(path)
        meta = {k.decode(): v.decode() for k, v in (pf.metadata.metadata or {}).items()}
        if meta.get("gapless.ledger_index") != str(e["index"]):
            findings.append(f"{e['path']}: footer names another ledger index")
        if meta.get("gapless.row_root") != e["row_root"]:
            findings.append(f"{e['path']}: footer row root differs")
        table = pf.read()
        hashes = row_hashes(table)
        if table.num_rows != e["rows"] or mth(hashes).hex() != e["row_root"]:
            findings.append(f"{e['path']}: rows do not hash to the ledger's row root")
        if e["table"] in ("readings", "readings_compacted"):
            row_hashes_of[e["path"]] = hashes
        if e["table"] == "readings_compacted":
            compactions.append((e["path"], json.loads(meta.get("gapless.sources", "null"))))
        if e["table"] == "receipts":
            for seq, disp in zip(table.column("receipt_seq").to_pylist(), table.column("disposition").to_pylist()):
                receipts[seq] = disp
        elif e["table"] == "readings":
            reading_receipts.update(table.column("receipt_seq").to_pylist())
        elif e["table"] == "rejects":
            reject_receipts.update(table.column("receipt_seq").to_pylist())

    # 4. No file outside the ledger.
    known = {e["path"] for e in entries}
    for root, dirs, files in os.walk(data):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.endswith(".parquet") and not f.startswith("."):
                rel = os.path.relpath(os.path.join(root, f), data).replace(os.sep, "/")
                if rel not in known:
                    findings.append(f"{rel}: not in the ledger")

    # 5, 6. Receipts and lineage.
    if sorted(receipts) != list(range(1, len(receipts) + 1)):
        findings.append("receipts: numbers do not run 1..n without holes")
    for seq, disp in receipts.items():
        if (disp == "stored") != (seq in reading_receipts):
            findings.append(f"receipt {seq}: {disp}, readings {'name' if seq in reading_receipts else 'do not name'} it")
        if (disp == "rejected") != (seq in reject_receipts):
            findings.append(f"receipt {seq}: {disp}, rejects {'have' if seq in reject_receipts else 'lack'} it")
    for seq in reading_receipts - set(receipts):
        findings.append(f"receipt {seq}: named by readings but absent")

    # 7. Each compacted file holds exactly the rows of the readings files it
    # names (files of its date, each named once): equal multisets of row hashes.
    date = lambda p: next((part[5:] for part in p.split("/") if part.startswith("date=")), None)
    for path, sources in compactions:
        if not isinstance(sources, list) or len(set(sources)) != len(sources):
            findings.append(f"{path}: gapless.sources missing or naming a file twice")
            continue
        bad = [s for s in sources if tables.get(s) != "readings" or date(s) != date(path) or s not in row_hashes_of]
        if bad:
            findings.append(f"{path}: sources not readings files of its date in the ledger: {bad}")
            continue
        theirs = sorted(h for s in sources for h in row_hashes_of[s])
        if sorted(row_hashes_of.get(path, [])) != theirs:
            findings.append(f"{path}: does not hold exactly the rows of its sources")

    if findings:
        print(f"verify_audit.py: {len(findings)} findings")
        for f in findings:
            print(f"  {f}")
        return 1
    if witness_files:
        print(f"verify_audit.py: the newest checkpoint is cosigned by {min_cosigs} of {len(witness_files)} witnesses")
    print(f"verify_audit.py: OK: {n} entries signed by {name}, {len(receipts)} receipts without holes, {len(compactions)} compacted files equal to their sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
