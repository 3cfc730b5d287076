"""Reads a gapless data directory with DuckDB and pyarrow only, and checks
what an auditor would: the files open as they are, both readers agree, values
come back digit for digit, rejected payloads come back byte for byte, receipt
numbers have no holes, and the counters balance.

usage: check_tables.py DATA_DIR EXPECTED_JSON
EXPECTED_JSON: {"readings": [[meter_id, register, ts_iso, value], ...],
                "rejects": [[topic, payload_hex], ...]}
Exit 0 when everything holds; prints what differs and exits 1 otherwise.
"""

import decimal
import json
import sys

import duckdb
import pyarrow
import pyarrow.dataset as ds


def main() -> int:
    data, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))
    problems = []

    # pyarrow, Hive partitioning as documented.
    readings = ds.dataset(f"{data}/readings", format="parquet", partitioning="hive").to_table()
    receipts = ds.dataset(f"{data}/receipts", format="parquet", partitioning="hive").to_table()
    rejects = ds.dataset(f"{data}/rejects", format="parquet", partitioning="hive").to_table()

    got = set()
    for r in readings.to_pylist():
        ts = r["ts"].strftime("%Y-%m-%dT%H:%M:%S") + "Z"
        got.add((r["meter_id"], r["register"], ts, r["value"]))
        if decimal.Decimal(r["value"]) != r["value_decimal"]:
            problems.append(f"value {r['value']!r} != value_decimal {r['value_decimal']}")
        sent = -decimal.Decimal(r["value"]).as_tuple().exponent
        if r["value_decimals"] != max(0, min(9, sent)):
            problems.append(f"value {r['value']!r} has value_decimals {r['value_decimals']}")
        if str(r["date"]) != ts[:10]:
            problems.append(f"reading at {ts} is in partition date={r['date']}")
    want = {tuple(x) for x in expected["readings"]}
    if got != want:
        problems.append(f"pyarrow readings differ: missing {sorted(want - got)}, extra {sorted(got - want)}")

    # DuckDB over the same files.
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT meter_id, register, strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ'), value
            FROM read_parquet('{data}/readings/**/*.parquet', hive_partitioning = true)"""
    ).fetchall()
    if set(rows) != want:
        problems.append(f"duckdb readings differ: {sorted(set(rows) ^ want)}")
    (n_readings,) = con.execute(
        f"SELECT count(*) FROM read_parquet('{data}/readings/**/*.parquet')"
    ).fetchone()
    if n_readings != len(want):
        problems.append(f"duckdb counts {n_readings} readings, expected {len(want)}")

    # Receipts: 1..n without holes, dispositions balance.
    seqs = sorted(receipts.column("receipt_seq").to_pylist())
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"receipt numbers have holes or repeats: {seqs[:20]}...")
    disp = dict(
        con.execute(
            f"SELECT disposition, count(*) FROM read_parquet('{data}/receipts/**/*.parquet') GROUP BY 1"
        ).fetchall()
    )
    if sum(disp.values()) != len(seqs):
        problems.append(f"dispositions {disp} do not add up to {len(seqs)} receipts")

    # Rejects: bytes exactly as published.
    got_rejects = {(r["topic"], r["payload"].hex()) for r in rejects.to_pylist()}
    want_rejects = {tuple(x) for x in expected["rejects"]}
    if got_rejects != want_rejects:
        problems.append(f"rejects differ: {sorted(got_rejects ^ want_rejects)}")

    # Every reading's lineage resolves to a stored receipt.
    (orphans,) = con.execute(
        f"""SELECT count(*) FROM read_parquet('{data}/readings/**/*.parquet') r
            ANTI JOIN read_parquet('{data}/receipts/**/*.parquet') c
            ON r.receipt_seq = c.receipt_seq AND c.disposition = 'stored'"""
    ).fetchone()
    if orphans:
        problems.append(f"{orphans} readings without a stored receipt")

    for p in problems:
        print("PROBLEM:", p)
    print(f"checked {readings.num_rows} readings, {receipts.num_rows} receipts, "
          f"{rejects.num_rows} rejects with pyarrow {pyarrow.__version__} and duckdb {duckdb.__version__}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
