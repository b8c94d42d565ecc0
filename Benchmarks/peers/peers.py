#!/usr/bin/env python3
"""Peer benchmarks W1-W6 (shared/BENCHMARKS.md) on DuckDB, Polars, ClickHouse (chdb) or
DataFusion, 2 threads.

usage: peers.py --engine duckdb|polars|chdb|datafusion --workload W1|W1x2|W2..W6 [--rows N] [--keys K] [--repeat R]
                [--json] [--text-file PATH] [--verify] [--mode MODE] [--tmp-dir DIR]
                [--duckdb-input table|arrays] [--data-dir DIR]

W1x2 is W1 with the key stored as two columns (key >> 10, key & 1023), grouped on both.

--rows   W1 and W1x2 100M, W2 100M, W3 20M (each side), W4 300M, W5 100M (words)
--keys   W1 1M, W3 5M, W4 30M
--mode   W3: cogroup (Σ|A_k|·|B_k| from two group counts) | join (count(*) of the join);
             default the faster one measured here: join for DuckDB, cogroup for Polars
         W4 polars: source (default; 10M-row chunks generated inside the streaming query by an
                    IO-plugin source, so its time includes generation) | memory (whole table
                    built in memory first, then a streaming query)
         W5: lines (default; one column per line, split on ' ', unnest/explode) | columns (read
             as 10 space-separated columns, then stacked)
         W6: plain (default) | gzip: which copy of the 8 TSV files to read
--data-dir  W6: where `bigslice-bench jobs --only W6` wrote the files (default /tmp/bigslice-w6;
         DIR/meta must say "bigslice-w6 v1 rows=N keys=K" for the --rows and --keys asked)
--duckdb-input  table (default): chunks appended to a native DuckDB table; arrays: query the
         registered numpy arrays directly
--verify recompute the checksum with plain numpy / Python (small sizes only) and fail on a mismatch

Each run prints one line; with --json one JSON object per line:
  {"bench": "W1-duckdb", "rows": N, "seconds": median query seconds, "gen_seconds": G,
   "peak_rss_bytes": R, "checksum": "...", ...}
"seconds" is the query alone with the data already handed to the engine, except W4 polars
--mode source, where generation runs inside the query ("gen_in_query": true) and gen_seconds is
the time spent in the generator. peak_rss_bytes is getrusage ru_maxrss of this process over its
whole life, the input data included; gen_rss_bytes is the same taken just before the first query.

Checksums (the Swift side prints the same strings):
  W1, W1x2, W4, W6  "groups=G keysum=S"  G groups; S = Σ key·sum mod 2**64, decimal (W1x2: the key
                                    put back together from its two columns)
  W2      "count=N sorted=true xor=X"  X = XOR of sorted[0], sorted[1e6], ... decimal
  W3      "count=C"                 rows of a ⋈ b
  W5      "distinct=D top=w:c,w:c,..."  10 most frequent, count descending, then word ascending
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

THREADS = 2
DEFAULT_ROWS = {"W1": 100_000_000, "W1x2": 100_000_000, "W2": 100_000_000, "W3": 20_000_000,
                "W4": 300_000_000, "W5": 100_000_000, "W6": 100_000_000}
DEFAULT_KEYS = {"W1": 1_000_000, "W1x2": 1_000_000, "W3": 5_000_000, "W4": 30_000_000, "W6": 1_000_000}
SEED_B = 2 ** 50
M64 = 2 ** 64


def peak_rss() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec. (ru_maxrss does not: on
    Linux it keeps the high-water mark of the process that forked and exec'd this one.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------- checksum strings

def kv_checksum(groups: int, keysum: int) -> str:
    return f"groups={groups} keysum={keysum % M64}"


def w2_checksum(sorted_keys: np.ndarray) -> str:
    ok = bool(np.all(sorted_keys[1:] >= sorted_keys[:-1]))
    x = int(np.bitwise_xor.reduce(sorted_keys[::1_000_000].view(np.uint64)))
    return f"count={len(sorted_keys)} sorted={'true' if ok else 'false'} xor={x}"


def w5_checksum(distinct: int, top) -> str:
    return f"distinct={distinct} top=" + ",".join(f"{w}:{c}" for w, c in top)


# ---------------------------------------------------------------- numpy references

def ref_kv(n: int, seed: int, keys: int) -> str:
    cnt = np.zeros(keys, dtype=np.int64)
    sums = np.zeros(keys, dtype=np.int64)
    for k, v in gen.kv_chunks(n, seed, keys):
        cnt += np.bincount(k, minlength=keys)
        sums += np.bincount(k, weights=v, minlength=keys).astype(np.int64)
    present = cnt > 0
    ks = np.flatnonzero(present).astype(np.uint64)
    return kv_checksum(int(present.sum()), int((ks * sums[present].astype(np.uint64)).sum(dtype=np.uint64)))


def ref_w2(n: int) -> str:
    return w2_checksum(np.sort(gen.w2_keys(n)))


def ref_w3(n: int, keys: int) -> str:
    ca = np.zeros(keys, dtype=np.int64)
    cb = np.zeros(keys, dtype=np.int64)
    for k, _ in gen.kv_chunks(n, 0, keys):
        ca += np.bincount(k, minlength=keys)
    for k, _ in gen.kv_chunks(n, SEED_B, keys):
        cb += np.bincount(k, minlength=keys)
    return f"count={int((ca * cb).sum())}"


def ref_w5(path: str) -> str:
    from collections import Counter
    c = Counter()
    with open(path) as f:
        for line in f:
            c.update(line.split())
    top = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return w5_checksum(len(c), top)


# ---------------------------------------------------------------- DuckDB

def duckdb_load(con, a, state, name: str, chunks) -> None:
    """Hand numpy arrays to DuckDB. --duckdb-input table (default): each chunk (a dict of
    int64 arrays) is registered and appended to a native table, so that the query runs on
    DuckDB's own storage and the whole input never exists twice. arrays: the chunks are
    concatenated and the arrays registered as they are."""
    chunks = iter(chunks)
    first = next(chunks)
    if a.duckdb_input == "arrays":
        parts = {c: [v] for c, v in first.items()}
        for ch in chunks:
            for c, v in ch.items():
                parts[c].append(v)
        cols = {c: np.concatenate(v) for c, v in parts.items()}
        state.setdefault("keep", []).append(cols)
        con.register(name, cols)
        return
    con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} BIGINT' for c in first)})").fetchall()
    for ch in _chain(first, chunks):
        con.register("chunk_np", ch)
        con.execute(f"INSERT INTO {name} SELECT * FROM chunk_np").fetchall()
        con.unregister("chunk_np")


def _chain(first, rest):
    yield first
    yield from rest


def duckdb_connect(path: str = ":memory:", memory_limit: str | None = None, temp_dir: str | None = None):
    import duckdb
    con = duckdb.connect(path)
    con.execute(f"SET threads={THREADS}").fetchall()
    if memory_limit:
        con.execute(f"SET memory_limit='{memory_limit}'").fetchall()
    if temp_dir:
        con.execute(f"SET temp_directory='{temp_dir}'").fetchall()
    return con


KV_SQL = ("SELECT count(*)::BIGINT, (sum(key::HUGEINT * s) % 18446744073709551616)::UBIGINT "
          "FROM (SELECT key, sum(value) AS s FROM t GROUP BY key)")


def w6_files(a) -> list[str]:
    """The 8 TSV files of W6 (plain or gzip, by --mode), checked against DIR/meta."""
    want = f"bigslice-w6 v1 rows={a.rows} keys={a.keys}\n"
    try:
        with open(os.path.join(a.data_dir, "meta")) as f:
            meta = f.read()
    except OSError:
        meta = ""
    if meta != want:
        raise SystemExit(f"W6: {a.data_dir} does not hold the files for rows={a.rows} keys={a.keys}; "
                         f"write them with: bigslice-bench jobs --only W6 --rows {a.rows}")
    sub, ext = ("gzip", ".tsv.gz") if a.mode == "gzip" else ("plain", ".tsv")
    return [os.path.join(a.data_dir, sub, f"part-{i:04d}-of-0008{ext}") for i in range(8)]


def duckdb_setup(a, state):
    wl, n, K = a.workload, a.rows, a.keys
    if wl == "W6":
        con = duckdb_connect()
        files = ", ".join("'" + f.replace("'", "''") + "'" for f in w6_files(a))
        src = (f"read_csv([{files}], delim='\\t', header=false, quote='', escape='', auto_detect=false, "
               f"columns={{'key': 'BIGINT', 'value': 'BIGINT'}})")
        sql = KV_SQL.replace("FROM t GROUP", f"FROM {src} GROUP")

        def run():
            g, s = con.execute(sql).fetchall()[0]
            return kv_checksum(g, s)
        return run
    if wl == "W1":
        con = duckdb_connect()
        duckdb_load(con, a, state, "t", ({"key": k, "value": v} for k, v in gen.kv_chunks(n, 0, K)))

        def run():
            g, s = con.execute(KV_SQL).fetchall()[0]
            return kv_checksum(g, s)
        return run
    if wl == "W1x2":
        con = duckdb_connect()
        duckdb_load(con, a, state, "t", ({"hi": k >> 10, "lo": k & 1023, "value": v}
                                         for k, v in gen.kv_chunks(n, 0, K)))
        sql = ("SELECT count(*)::BIGINT, (sum((hi * 1024 + lo)::HUGEINT * s) % 18446744073709551616)::UBIGINT "
               "FROM (SELECT hi, lo, sum(value) AS s FROM t GROUP BY hi, lo)")

        def run():
            g, s = con.execute(sql).fetchall()[0]
            return kv_checksum(g, s)
        return run
    if wl == "W2":
        con = duckdb_connect()
        duckdb_load(con, a, state, "t", ({"k": k} for k in gen.w2_chunks(n)))

        def run():
            out = con.execute("SELECT k FROM t ORDER BY k").fetchnumpy()["k"]
            state["result"] = out
        state["checksum"] = lambda: w2_checksum(np.asarray(state.pop("result")))
        return run
    if wl == "W3":
        con = duckdb_connect()
        duckdb_load(con, a, state, "a", ({"key": k} for k, _ in gen.kv_chunks(n, 0, K)))
        duckdb_load(con, a, state, "b", ({"key": k} for k, _ in gen.kv_chunks(n, SEED_B, K)))
        if a.mode == "join":
            sql = "SELECT count(*)::BIGINT FROM a JOIN b USING (key)"
        else:
            sql = ("SELECT coalesce(sum(ca * cb), 0)::BIGINT FROM "
                   "(SELECT key, count(*) AS ca FROM a GROUP BY key) "
                   "JOIN (SELECT key, count(*) AS cb FROM b GROUP BY key) USING (key)")

        def run():
            return f"count={con.execute(sql).fetchall()[0][0]}"
        return run
    if wl == "W4":
        tmp = tempfile.mkdtemp(prefix="peers-w4-duckdb-", dir=a.tmp_dir)
        state["cleanup"] = lambda: shutil.rmtree(tmp, ignore_errors=True)
        con = duckdb_connect(os.path.join(tmp, "w4.duckdb"), "2GiB", os.path.join(tmp, "spill"))
        con.execute("CREATE TABLE t (key BIGINT, value BIGINT)").fetchall()
        for k, v in gen.kv_chunks(n, 0, K):
            con.register("chunk", {"key": k, "value": v})
            con.execute("INSERT INTO t SELECT * FROM chunk").fetchall()
            con.unregister("chunk")
        con.execute("CHECKPOINT").fetchall()
        state["note"] = "table loaded in 10M-row chunks into an on-disk database; memory_limit=2GiB"

        def run():
            g, s = con.execute(KV_SQL).fetchall()[0]
            return kv_checksum(g, s)
        return run
    if wl == "W5":
        con = duckdb_connect()
        path = a.text_file.replace("'", "''")
        if a.mode == "columns":
            cols = ", ".join(f"'c{j}': 'VARCHAR'" for j in range(10))
            src = (f"read_csv('{path}', delim=' ', header=false, quote='', escape='', "
                   f"auto_detect=false, null_padding=true, columns={{{cols}}})")
            words = " UNION ALL ".join(f"SELECT c{j} AS w FROM r" for j in range(10))
            sql = (f"WITH r AS MATERIALIZED (SELECT * FROM {src}), "
                   f"c AS MATERIALIZED (SELECT w, count(*) AS n FROM ({words}) WHERE w IS NOT NULL GROUP BY w) ")
        else:
            src = (f"read_csv('{path}', delim='\\t', header=false, quote='', escape='', "
                   f"auto_detect=false, columns={{'line': 'VARCHAR'}})")
            sql = (f"WITH c AS MATERIALIZED (SELECT w, count(*) AS n FROM "
                   f"(SELECT unnest(string_split(line, ' ')) AS w FROM {src}) GROUP BY w) ")
        sql += "SELECT w, n, (SELECT count(*) FROM c) AS d FROM c ORDER BY n DESC, w ASC LIMIT 10"

        def run():
            rows = con.execute(sql).fetchall()
            return w5_checksum(rows[0][2] if rows else 0, [(w, c) for w, c, _ in rows])
        return run
    raise SystemExit(f"unknown workload {wl}")


# ---------------------------------------------------------------- Polars

def polars_setup(a, state):
    import polars as pl
    wl, n, K = a.workload, a.rows, a.keys

    def kv_query(lf):
        return (lf.group_by("key").agg(pl.col("value").sum().alias("s"))
                .select(pl.len().alias("g"),
                        (pl.col("key").cast(pl.UInt64) * pl.col("s").cast(pl.UInt64)).sum().alias("ks")))

    if wl == "W6":
        files = w6_files(a)

        def run():
            lf = pl.scan_csv(files, separator="\t", has_header=False, quote_char=None,
                             schema={"key": pl.Int64, "value": pl.Int64})
            r = kv_query(lf).collect()
            return kv_checksum(r["g"][0], r["ks"][0])
        return run
    if wl == "W1":
        key, value = gen.kv_table(n, 0, K)
        df = pl.DataFrame({"key": key, "value": value})
        del key, value

        def run():
            r = kv_query(df.lazy()).collect()
            return kv_checksum(r["g"][0], r["ks"][0])
        return run
    if wl == "W1x2":
        key, value = gen.kv_table(n, 0, K)
        df = pl.DataFrame({"hi": key >> 10, "lo": key & 1023, "value": value})
        del key, value

        def run():
            r = (df.lazy().group_by(["hi", "lo"]).agg(pl.col("value").sum().alias("s"))
                 .select(pl.len().alias("g"),
                         ((pl.col("hi") * 1024 + pl.col("lo")).cast(pl.UInt64)
                          * pl.col("s").cast(pl.UInt64)).sum().alias("ks"))).collect()
            return kv_checksum(r["g"][0], r["ks"][0])
        return run
    if wl == "W2":
        df = pl.DataFrame({"k": gen.w2_keys(n)})

        def run():
            state["result"] = df.sort("k")
        state["checksum"] = lambda: w2_checksum(state.pop("result")["k"].to_numpy())
        return run
    if wl == "W3":
        da = pl.DataFrame({"key": gen.kv_table(n, 0, K)[0]})
        db = pl.DataFrame({"key": gen.kv_table(n, SEED_B, K)[0]})
        if a.mode == "join":
            q = da.lazy().join(db.lazy(), on="key").select(pl.len().alias("c"))
        else:
            q = (da.lazy().group_by("key").agg(pl.len().alias("ca"))
                 .join(db.lazy().group_by("key").agg(pl.len().alias("cb")), on="key")
                 .select((pl.col("ca").cast(pl.Int64) * pl.col("cb").cast(pl.Int64)).sum().alias("c")))

        def run():
            return f"count={q.collect()['c'][0]}"
        return run
    if wl == "W4":
        if a.mode == "memory":
            key, value = gen.kv_table(n, 0, K)
            df = pl.DataFrame({"key": key, "value": value})
            del key, value
            state["note"] = "whole table in memory, streaming query; Polars has no memory cap"

            def run():
                r = kv_query(df.lazy()).collect(engine="streaming")
                return kv_checksum(r["g"][0], r["ks"][0])
            return run
        from polars.io.plugins import register_io_source
        state["gen_in_query"] = True
        state["note"] = ("10M-row chunks generated inside the streaming query (IO-plugin source); "
                         "seconds include generation; Polars has no memory cap")
        gen_times = []

        def source(with_columns, predicate, n_rows, batch_size):
            t = time.perf_counter()
            for k, v in gen.kv_chunks(n, 0, K):
                d = pl.DataFrame({"key": k, "value": v})
                if with_columns is not None:
                    d = d.select(with_columns)
                if predicate is not None:
                    d = d.filter(predicate)
                gen_times[-1] += time.perf_counter() - t
                yield d
                t = time.perf_counter()
            gen_times[-1] += time.perf_counter() - t

        def run():
            gen_times.append(0.0)
            lf = register_io_source(source, schema={"key": pl.Int64, "value": pl.Int64})
            r = kv_query(lf).collect(engine="streaming")
            return kv_checksum(r["g"][0], r["ks"][0])
        state["gen_seconds"] = lambda: statistics.median(gen_times)
        return run
    if wl == "W5":
        path = a.text_file
        if a.mode == "columns":
            def run():
                lf = pl.scan_csv(path, has_header=False, separator=" ", quote_char=None,
                                 schema={f"c{j}": pl.String for j in range(10)})
                c = (lf.unpivot(value_name="w").select("w").drop_nulls()
                     .group_by("w").agg(pl.len().alias("n")).collect(engine="streaming"))
                return polars_top(c)
        else:
            def run():
                lf = pl.scan_csv(path, has_header=False, separator="\t", quote_char=None,
                                 schema={"line": pl.String})
                c = (lf.select(pl.col("line").str.split(" ").alias("w")).explode("w")
                     .group_by("w").agg(pl.len().alias("n")).collect(engine="streaming"))
                return polars_top(c)

        def polars_top(c):
            top = c.sort(["n", "w"], descending=[True, False]).head(10)
            return w5_checksum(c.height, list(zip(top["w"].to_list(), top["n"].to_list())))
        return run
    raise SystemExit(f"unknown workload {wl}")


# ---------------------------------------------------------------- ClickHouse (chdb)

W5_TOP = ("SELECT w, n, count() OVER () AS d FROM ({counts}) ORDER BY n DESC, w ASC LIMIT 10")


def chdb_setup(a, state):
    """ClickHouse in process: the arrays copied into Memory tables chunk by chunk, or files read
    with file(); max_threads=2 on every query."""
    from chdb import session as chs
    import pyarrow as pa
    wl, n, K = a.workload, a.rows, a.keys
    tmp = tempfile.mkdtemp(prefix="peers-w4-chdb-", dir=a.tmp_dir) if wl == "W4" else None
    if tmp:
        state["cleanup"] = lambda: shutil.rmtree(tmp, ignore_errors=True)
    # W4's table is on disk, so the session has a path (one per process, so chosen first).
    sess = chs.Session(os.path.join(tmp, "db")) if tmp else chs.Session()
    settings = f" SETTINGS max_threads={THREADS}"

    def load(name: str, columns: str, chunks) -> None:
        sess.query(f"CREATE TABLE {name} ({columns}) ENGINE = Memory")
        for cols in chunks:
            chunk = pa.table(cols)  # noqa: F841 (read by name by Python())
            sess.query(f"INSERT INTO {name} SELECT * FROM Python(chunk)" + settings)

    def one(sql: str) -> list[str]:
        return str(sess.query(sql + settings, "TSV")).strip().split("\t")

    kv = ("SELECT count(), sum(toUInt64({key}) * toUInt64(s)) FROM "
          "(SELECT {group}, sum(value) AS s FROM t GROUP BY {group})")
    if wl == "W1":
        load("t", "key Int64, value Int64", ({"key": k, "value": v} for k, v in gen.kv_chunks(n, 0, K)))
        sql = kv.format(key="key", group="key")
    elif wl == "W1x2":
        load("t", "hi Int64, lo Int64, value Int64",
             ({"hi": k >> 10, "lo": k & 1023, "value": v} for k, v in gen.kv_chunks(n, 0, K)))
        sql = kv.format(key="hi * 1024 + lo", group="hi, lo")
    elif wl == "W6":
        files = w6_files(a)
        directory, suffix = os.path.dirname(files[0]), files[0][files[0].index(".tsv"):]
        src = (f"file('{directory}/part-*-of-0008{suffix}', 'TSV', 'key Int64, value Int64'"
               + (", 'gzip')" if a.mode == "gzip" else ")"))
        sql = kv.format(key="key", group="key").replace("FROM t GROUP", f"FROM {src} GROUP")
    elif wl == "W2":
        load("t", "k Int64", ({"k": k} for k in gen.w2_chunks(n)))

        def run():
            out = sess.query("SELECT k FROM t ORDER BY k" + settings, "ArrowTable")
            state["result"] = out.column("k").to_numpy()
        state["checksum"] = lambda: w2_checksum(np.asarray(state.pop("result")))
        return run
    elif wl == "W3":
        load("a", "key Int64", ({"key": k} for k, _ in gen.kv_chunks(n, 0, K)))
        load("b", "key Int64", ({"key": k} for k, _ in gen.kv_chunks(n, SEED_B, K)))
        if a.mode == "join":
            sql3 = "SELECT count() FROM a INNER JOIN b USING (key)"
        else:
            sql3 = ("SELECT sum(ca * cb) FROM (SELECT key, count() AS ca FROM a GROUP BY key) AS x "
                    "INNER JOIN (SELECT key, count() AS cb FROM b GROUP BY key) AS y USING (key)")

        def run():
            return f"count={int(one(sql3)[0])}"
        return run
    elif wl == "W4":
        sess.query("CREATE TABLE t (key Int64, value Int64) ENGINE = MergeTree ORDER BY tuple()")
        for k, v in gen.kv_chunks(n, 0, K):
            chunk = pa.table({"key": k, "value": v})  # noqa: F841 (read by name by Python())
            sess.query("INSERT INTO t SELECT * FROM Python(chunk)" + settings)
        settings += ", max_memory_usage=2147483648, max_bytes_before_external_group_by=1073741824"
        state["note"] = ("table loaded in 10M-row chunks into an on-disk MergeTree table; max_memory_usage=2GiB, "
                         "external aggregation beyond 1GiB")
        sql = kv.format(key="key", group="key")
    elif wl == "W5":
        path = a.text_file.replace("'", "\\'")
        counts = (f"SELECT w, count() AS n FROM (SELECT arrayJoin(splitByChar(' ', line)) AS w "
                  f"FROM file('{path}', 'LineAsString', 'line String')) GROUP BY w")
        sql5 = W5_TOP.format(counts=counts)

        def run():
            rows = [r.split("\t") for r in str(sess.query(sql5 + settings, "TSV")).strip().split("\n") if r]
            return w5_checksum(int(rows[0][2]) if rows else 0, [(w, int(c)) for w, c, _ in rows])
        return run
    else:
        raise SystemExit(f"{wl}: not run on chdb")

    def run():
        g, s = one(sql)
        return kv_checksum(int(g), int(s))
    return run


# ---------------------------------------------------------------- DataFusion

def datafusion_setup(a, state):
    """DataFusion: the arrays registered as record batches in two partitions, or files
    registered as CSV; target_partitions=2."""
    import pyarrow as pa
    from datafusion import SessionConfig, SessionContext
    wl, n, K = a.workload, a.rows, a.keys
    ctx = SessionContext(SessionConfig().with_target_partitions(THREADS))

    def load(name: str, chunks) -> None:
        batches = [b for cols in chunks for b in pa.table(cols).to_batches()]
        ctx.register_record_batches(name, [batches[0::2], batches[1::2]])

    # The exact sum as a decimal, reduced mod 2^64 in Python (kv_checksum): a literal of 2^64
    # in the SQL is a double, whose modulo loses the low bits at W4's sizes.
    kv = ("SELECT count(*) AS g, sum(CAST({key} AS DECIMAL(38,0)) * CAST(s AS DECIMAL(38,0))) AS ks "
          "FROM (SELECT {group}, sum(value) AS s FROM t GROUP BY {group})")
    if wl == "W1":
        load("t", ({"key": k, "value": v} for k, v in gen.kv_chunks(n, 0, K)))
        sql = kv.format(key="key", group="key")
    elif wl == "W1x2":
        load("t", ({"hi": k >> 10, "lo": k & 1023, "value": v} for k, v in gen.kv_chunks(n, 0, K)))
        sql = kv.format(key="hi * 1024 + lo", group="hi, lo")
    elif wl == "W6":
        files = w6_files(a)
        schema = pa.schema([("key", pa.int64()), ("value", pa.int64())])
        extension = files[0][files[0].index(".tsv"):]
        ctx.register_csv("t", files, schema=schema, has_header=False, delimiter="\t", file_extension=extension,
                         file_compression_type="gzip" if a.mode == "gzip" else None)
        sql = kv.format(key="key", group="key")
    elif wl == "W2":
        load("t", ({"k": k} for k in gen.w2_chunks(n)))

        def run():
            batches = ctx.sql("SELECT k FROM t ORDER BY k").collect()
            state["result"] = pa.Table.from_batches(batches).column("k").to_numpy()
        state["checksum"] = lambda: w2_checksum(np.asarray(state.pop("result")))
        return run
    elif wl == "W3":
        load("a", ({"key": k} for k, _ in gen.kv_chunks(n, 0, K)))
        load("b", ({"key": k} for k, _ in gen.kv_chunks(n, SEED_B, K)))
        if a.mode == "join":
            sql3 = "SELECT count(*) AS c FROM a JOIN b ON a.key = b.key"
        else:
            sql3 = ("SELECT sum(ca * cb) AS c FROM (SELECT key, count(*) AS ca FROM a GROUP BY key) x "
                    "JOIN (SELECT key, count(*) AS cb FROM b GROUP BY key) y ON x.key = y.key")

        def run():
            return f"count={ctx.sql(sql3).collect()[0].column(0)[0].as_py()}"
        return run
    elif wl == "W4":
        import pyarrow.parquet as pq
        from datafusion import RuntimeEnvBuilder
        tmp = tempfile.mkdtemp(prefix="peers-w4-datafusion-", dir=a.tmp_dir)
        state["cleanup"] = lambda: shutil.rmtree(tmp, ignore_errors=True)
        for i, (k, v) in enumerate(gen.kv_chunks(n, 0, K)):
            pq.write_table(pa.table({"key": k, "value": v}), os.path.join(tmp, f"part-{i:04d}.parquet"),
                           compression="none")
        runtime = (RuntimeEnvBuilder().with_fair_spill_pool(2 << 30)
                   .with_disk_manager_specified(os.path.join(tmp, "spill")))
        os.makedirs(os.path.join(tmp, "spill"))
        ctx = SessionContext(SessionConfig().with_target_partitions(THREADS), runtime)
        ctx.register_parquet("t", tmp)
        state["note"] = "table written as 10M-row Parquet files, scanned by the query; a 2 GiB fair spill pool"
        sql = kv.format(key="key", group="key")
    elif wl == "W5":
        ctx.register_csv("lines", a.text_file, schema=pa.schema([("line", pa.string())]), has_header=False,
                         delimiter="\t", file_extension=os.path.splitext(a.text_file)[1] or ".txt")
        counts = "SELECT w, count(*) AS n FROM (SELECT unnest(string_to_array(line, ' ')) AS w FROM lines) GROUP BY w"
        sql5 = W5_TOP.format(counts=counts).replace("count() OVER", "count(*) OVER")

        def run():
            rows = pa.Table.from_batches(ctx.sql(sql5).collect()).to_pylist()
            return w5_checksum(rows[0]["d"] if rows else 0, [(r["w"], r["n"]) for r in rows])
        return run
    else:
        raise SystemExit(f"{wl}: not run on datafusion")

    def run():
        r = ctx.sql(sql).collect()[0].to_pylist()[0]
        return kv_checksum(int(r["g"]), int(r["ks"]))
    return run


# ---------------------------------------------------------------- driver

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", required=True, choices=["duckdb", "polars", "chdb", "datafusion"])
    p.add_argument("--workload", required=True, choices=["W1", "W1x2", "W2", "W3", "W4", "W5", "W6"])
    p.add_argument("--rows", type=int)
    p.add_argument("--keys", type=int)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--text-file", default="/tmp/bigslice-w5.txt")
    p.add_argument("--verify", action="store_true")
    p.add_argument("--mode")
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--duckdb-input", choices=["table", "arrays"], default="table")
    p.add_argument("--data-dir", default="/tmp/bigslice-w6")
    a = p.parse_args()
    a.rows = a.rows or DEFAULT_ROWS[a.workload]
    a.keys = a.keys or DEFAULT_KEYS.get(a.workload, 0)
    if a.rows <= 0 or a.repeat <= 0:
        p.error("--rows and --repeat take positive whole numbers")
    modes = {("W3", "duckdb"): ["join", "cogroup"], ("W3", "polars"): ["cogroup", "join"],
             ("W4", "polars"): ["source", "memory"],
             ("W5", "duckdb"): ["lines", "columns"], ("W5", "polars"): ["lines", "columns"],
             ("W6", "duckdb"): ["plain", "gzip"], ("W6", "polars"): ["plain", "gzip"],
             ("W3", "chdb"): ["join", "cogroup"], ("W3", "datafusion"): ["join", "cogroup"],
             ("W6", "chdb"): ["plain", "gzip"], ("W6", "datafusion"): ["plain", "gzip"]}
    allowed = modes.get((a.workload, a.engine), [])
    if a.mode is None:
        a.mode = allowed[0] if allowed else None
    elif a.mode not in allowed:
        p.error(f"--mode for {a.workload} on {a.engine}: one of {allowed or 'none'}")

    if a.engine == "polars":
        os.environ["POLARS_MAX_THREADS"] = str(THREADS)   # must be set before the import
        import polars as pl
        assert pl.thread_pool_size() == THREADS, pl.thread_pool_size()
        version, setup = pl.__version__, polars_setup
    elif a.engine == "chdb":
        import chdb
        version, setup = chdb.__version__, chdb_setup
    elif a.engine == "datafusion":
        import datafusion
        version, setup = datafusion.__version__, datafusion_setup
    else:
        import duckdb
        version, setup = duckdb.__version__, duckdb_setup

    if a.workload == "W5":
        t = time.perf_counter()
        # written by a child process, so that this process's peak RSS is the query's
        wrote = gen.ensure_w5_text(a.text_file, a.rows, subprocess=True)
        text_gen = time.perf_counter() - t
        if wrote:
            print(f"# wrote {a.text_file} ({a.rows} words) in {text_gen:.2f} s", file=sys.stderr)

    state: dict = {}
    t = time.perf_counter()
    run = setup(a, state)
    gen_seconds = time.perf_counter() - t
    gen_rss = peak_rss()

    times, checksums = [], []
    try:
        for _ in range(a.repeat):
            t = time.perf_counter()
            c = run()
            times.append(time.perf_counter() - t)
            if c is None:
                c = state["checksum"]()
            checksums.append(c)
    finally:
        if "cleanup" in state:
            state["cleanup"]()
    if len(set(checksums)) != 1:
        print(f"checksums differ between runs: {checksums}", file=sys.stderr)
        return 1
    if "gen_seconds" in state:
        gen_seconds = state["gen_seconds"]()

    rec = {"bench": f"{a.workload}-{a.engine}", "rows": a.rows, "seconds": statistics.median(times),
           "gen_seconds": gen_seconds, "peak_rss_bytes": peak_rss(), "checksum": checksums[0],
           "runs": times, "gen_rss_bytes": gen_rss, "engine": a.engine, "version": version,
           "threads": THREADS}
    if a.keys:
        rec["keys"] = a.keys
    if a.mode:
        rec["mode"] = a.mode
    if state.get("gen_in_query"):
        rec["gen_in_query"] = True
    if "note" in state:
        rec["note"] = state["note"]

    if a.verify:
        t = time.perf_counter()
        wl = a.workload
        ref = (ref_kv(a.rows, 0, a.keys) if wl in ("W1", "W1x2", "W4", "W6") else ref_w2(a.rows) if wl == "W2"
               else ref_w3(a.rows, a.keys) if wl == "W3" else ref_w5(a.text_file))
        rec["verified"] = ref == checksums[0]
        print(f"# numpy reference: {ref} ({time.perf_counter() - t:.2f} s)", file=sys.stderr)

    if a.json:
        print(json.dumps(rec), flush=True)
    else:
        print(f"{rec['bench']} {version} rows={a.rows} median {rec['seconds']:.3f} s "
              f"(runs {' '.join(f'{x:.3f}' for x in times)}) gen {gen_seconds:.2f} s "
              f"peak RSS {rec['peak_rss_bytes'] / 2**30:.2f} GiB (after gen {gen_rss / 2**30:.2f}) "
              f"checksum {checksums[0]}" + (f" [{rec['note']}]" if "note" in rec else ""), flush=True)
    if a.verify and not rec["verified"]:
        print("checksum differs from the numpy reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
