#!/usr/bin/env python3
"""Runs the benchmarks of the `benches` crate and writes BENCHMARKS.md from their results.

    python3 benches/report.py --run [--cluster]   # run everything, then write the report
    python3 benches/report.py                     # write the report from the last run

--run deletes <target>/criterion first, so every figure comes from that one run.
--cluster starts a local Redis Cluster with .ci/redis-cluster.sh for the run and stops it.
Service URLs come from SESSION_TEST_POSTGRES_URL, SESSION_TEST_MYSQL_URL,
SESSION_TEST_REDIS_URL and SESSION_TEST_REDIS_CLUSTER_URLS; stores whose variable is unset
are skipped (and missing from the report).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORES = [
    "memory", "moka", "sqlite-file", "sqlite-mem", "postgres", "mysql", "redis",
    "redis-cluster", "cached-moka-postgres", "cached-redis-postgres", "file",
    "cookie-signed", "cookie-encrypted",
]
SERVER_SIDE = set(STORES) - {"cookie-signed", "cookie-encrypted"}
OPS = ["create", "load", "save", "touch", "delete"]
TITLES = {
    "memory": "MemoryStore (session-core)",
    "moka": "MokaStore (session-cache)",
    "sqlite-file": "SqliteStore, file in WAL mode (session-db)",
    "sqlite-mem": "SqliteStore, in memory (session-db)",
    "postgres": "PostgresStore (session-db)",
    "mysql": "MySqlStore on MariaDB (session-db)",
    "redis": "RedisStore (session-cache)",
    "redis-cluster": "RedisStore on a three-master Redis Cluster (session-cache)",
    "cached-moka-postgres": "CachedStore<MokaStore, PostgresStore> (session-cache)",
    "cached-redis-postgres": "CachedStore<RedisStore, PostgresStore> (session-cache)",
    "file": "FileStore (session-file)",
    "cookie-signed": "CookieStore, signed (session-signed-cookie)",
    "cookie-encrypted": "CookieStore, encrypted (session-signed-cookie)",
}
RAW = {
    "memory": "a `RwLock<HashMap>` insert/get/replace/remove of the record",
    "moka": "moka `get`/`insert`/`invalidate` of the same framed bytes",
    "sqlite-file": "the store's own SQL through sqlx, prepared, payload pre-encoded",
    "sqlite-mem": "the store's own SQL through sqlx, prepared, payload pre-encoded",
    "postgres": "the store's own SQL through sqlx, prepared, payload pre-encoded",
    "mysql": "the store's own SQL through sqlx, prepared, payload pre-encoded",
    "redis": "`SET PX NX` / `GET` / `EVALSHA` (CAS, expiry) / `DEL` on one multiplexed connection",
    "redis-cluster": "`SET PX NX` / `GET` / `EVALSHA` / `DEL` on one cluster connection",
    "cached-moka-postgres": "raw moka `get` for load; raw PostgreSQL statement + moka `insert` for writes",
    "cached-redis-postgres": "raw Redis `GET` for load; raw PostgreSQL statement + Redis `SET PX` for writes",
    "file": "write + fsync + rename (`fs::read`, `remove_file`), one `spawn_blocking` each",
    "cookie-signed": "serde_json + HMAC-SHA256 + base64 of the record (delete: nothing)",
    "cookie-encrypted": "serde_json + AES-256-GCM + base64 of the record (delete: nothing)",
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout.strip()


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def run(args):
    crit = target_dir() / "criterion"
    if crit.exists():
        shutil.rmtree(crit)
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(target_dir())
    script = ROOT / ".ci" / "redis-cluster.sh"
    if args.cluster:
        # The script prints the URLs first; redis-cli's own output may follow on stdout.
        started = sh(["bash", str(script), "start"])
        env["SESSION_TEST_REDIS_CLUSTER_URLS"] = ",".join(re.findall(r"redis://[0-9.]+:[0-9]+", started)[:3])
    try:
        subprocess.run(["cargo", "bench", "-p", "benches"], check=True, env=env, cwd=ROOT)
        # tower-sessions-sqlx-store on SQLite, from its own project (another libsqlite3-sys),
        # under the same benchmark ids and into the same criterion directory.
        peer = ROOT / "benches" / "sqlite-peer" / "Cargo.toml"
        subprocess.run(["cargo", "bench", "--manifest-path", str(peer)], check=True, env=env, cwd=ROOT)
    finally:
        if args.cluster:
            subprocess.run(["bash", str(script), "stop"], check=False)


def load_results():
    """{(group, function): summary} from criterion's benchmark.json and sample.json."""
    out = {}
    for bj in (target_dir() / "criterion").glob("**/new/benchmark.json"):
        meta = json.loads(bj.read_text())
        sample = json.loads((bj.parent / "sample.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements", 1) or 1
        per_op = sorted(t / i / elements for t, i in zip(sample["times"], sample["iters"]))
        mean = sum(sample["times"]) / sum(sample["iters"]) / elements
        name = meta.get("function_id") or meta.get("value_str")
        out[(meta["group_id"], name)] = {
            "mean": mean,
            "p50": pct(per_op, 50),
            "p99": pct(per_op, 99),
            "ops": 1e9 / mean,
            "samples": len(per_op),
        }
    return out


def pct(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, -(-p * len(sorted_values) // 100) - 1))
    return sorted_values[int(k)]


def dur(ns):
    if ns != ns:
        return "-"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def rate(ops):
    if ops >= 1e6:
        return f"{ops / 1e6:.2f} M"
    if ops >= 1e3:
        return f"{ops / 1e3:.1f} k"
    return f"{ops:.0f}"


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    def safe(cmd):
        try:
            return sh(cmd, cwd=ROOT)
        except Exception:  # noqa: BLE001 - a missing tool only blanks one line
            return "unknown"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores (`nproc`)",
        f"- Memory: {mem}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Rust: {safe(['rustc', '-V'])}",
        f"- Commit: {safe(['git', 'rev-parse', '--short', 'HEAD'])}",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def store_rows(res, store):
    rows = []
    for size in ["1k", "10k"]:
        for op in OPS:
            for mode in ["seq", "c32"]:
                group = f"{store}.{op}.{size}.{mode}"
                funcs = {f: v for (g, f), v in res.items() if g == group}
                if "ours" not in funcs:
                    continue
                ours = funcs["ours"]
                raw = funcs.get("raw")
                peers = {f: v for f, v in funcs.items() if f not in ("ours", "raw")}
                best = max(peers.items(), key=lambda kv: kv[1]["ops"], default=None)
                rows.append({
                    "group": group, "op": op, "size": size, "mode": mode,
                    "ours": ours, "raw": raw, "best": best, "peers": peers,
                    "raw_ratio": ours["mean"] / raw["mean"] if raw else None,
                    "peer_ratio": best[1]["ops"] / ours["ops"] if best else None,
                })
    return rows


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def write(args):
    res = load_results()
    scale_path = target_dir() / "criterion" / "scale.json"
    scale = json.loads(scale_path.read_text()) if scale_path.exists() else {}
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append("Generated by `benches/report.py` from one run of the `benches` crate; do not edit by hand.")
    L.append("")
    L.append("## Machine")
    L.append("")
    L += machine()
    L.append("")
    L.append("The bench client, the stores and the database servers share these two cores, so")
    L.append("absolute figures vary from run to run; the ratios between subjects measured back to")
    L.append("back in the same run are what matter.")
    L.append("")
    L.append("## How to regenerate every figure")
    L.append("")
    L.append("```sh")
    L.append("SESSION_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \\")
    L.append("SESSION_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \\")
    L.append("SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379/ \\")
    L.append("python3 benches/report.py --run --cluster")
    L.append("```")
    L.append("")
    L.append("`--run` deletes `<target>/criterion`, runs `cargo bench -p benches` (targets `stores`,")
    L.append("`e2e`, `scale`), then the SQLite peer's project `benches/sqlite-peer` (its sqlx links")
    L.append("another SQLite than ours, so it cannot share our build), and writes this file;")
    L.append("`--cluster` starts a three-master Redis Cluster with `.ci/redis-cluster.sh` for the")
    L.append("run. `BENCH_QUICK=1` makes every benchmark run briefly (what CI does); its figures")
    L.append("mean nothing.")
    L.append("")
    L.append("## Method")
    L.append("")
    L.append("- Records: ten keys of strings, about 1 KiB (`1k`) or 10 KiB (`10k`) of JSON. Cookie")
    L.append("  stores run 1 KiB only (10 KiB does not fit in a cookie).")
    L.append("- `seq`: one task does the operations one after another. `c32`: 32 tasks at once on")
    L.append("  the multi-threaded tokio runtime (one worker per core); one criterion iteration is")
    L.append("  one operation on each of the 32 tasks, and times are reported per operation")
    L.append("  (wall time ÷ 32), so ops/s is the aggregate throughput.")
    L.append("- `save` is compare-and-set (the version is tracked); `load` reads a live session;")
    L.append("  `create` and `delete` are timed in chunks, and the sessions they leave (or need) are")
    L.append("  removed (or made) untimed between chunks.")
    L.append("- Criterion runs flat sampling (20 samples, 300 ms warm-up, 1 s measurement). ops/s")
    L.append("  is total operations ÷ total time. p50 and p99 are nearest-rank percentiles over the")
    L.append("  samples' per-operation means (each sample's time ÷ its iterations ÷ operations per")
    L.append("  iteration): they show run-to-run spread of those means, not the latency tail of")
    L.append("  single requests; with 20 samples p99 is the slowest sample.")
    L.append("- `ours ÷ raw` is our time per operation over the raw medium's (1.00 = no overhead).")
    L.append("  `best peer ÷ ours` is the fastest peer's throughput over ours (below 1.00: we are")
    L.append("  faster; the 1.3× target means at most 0.77).")
    L.append("- Peers run through their own store traits. tower-sessions has no compare-and-set and")
    L.append("  no touch: its `save` is an upsert and its touch is a `save` with a new expiry date.")
    L.append("  actix-session: `save` creates, `update` saves, `update_ttl` touches. actix's")
    L.append("  `CookieSessionStore` only serialises JSON (signing or encryption happens in its")
    L.append("  middleware), so it does less work than a cookie store that signs or encrypts.")
    L.append("")
    for store in STORES:
        rows = store_rows(res, store)
        if not rows:
            continue
        L.append(f"## {TITLES[store]}")
        L.append("")
        L.append(f"Raw medium: {RAW[store]}.")
        peers = sorted({p for r in rows for p in r["peers"]})
        L.append(f"Peers: {', '.join(peers) if peers else 'none on this medium'}.")
        L.append("")
        L.append("| op | size | mode | ops/s | p50 | p99 | raw ops/s | ours ÷ raw | best peer | peer ops/s | best peer ÷ ours |")
        L.append("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
        for r in rows:
            o = r["ours"]
            raw = r["raw"]
            best = r["best"]
            L.append(
                f"| {r['op']} | {r['size']} | {r['mode']} | {rate(o['ops'])} | {dur(o['p50'])} | {dur(o['p99'])} "
                f"| {rate(raw['ops']) if raw else '-'} | {fmt_ratio(r['raw_ratio'])} "
                f"| {best[0] if best else '-'} | {rate(best[1]['ops']) if best else '-'} | {fmt_ratio(r['peer_ratio'])} |"
            )
        L.append("")
    e2e = {f: v for (g, f), v in res.items() if g.startswith("e2e.")}
    if e2e:
        L.append("## End to end: one axum request reading and writing one session value")
        L.append("")
        L.append("In-process (`tower::ServiceExt::oneshot` on the `Router`), every request carrying its")
        L.append("session cookie, so each one loads and saves. `bare` is the same route with no sessions.")
        L.append("")
        L.append("| mode | stack | req/s | p50 | p99 | ÷ bare (time) |")
        L.append("|---|---|---:|---:|---:|---:|")
        for mode in ["seq", "c32"]:
            group = f"e2e.request.{mode}"
            funcs = {f: v for (g, f), v in res.items() if g == group}
            bare = funcs.get("bare")
            for name in ["bare", "ours-moka", "ours-memory", "tower-sessions-moka", "tower-sessions-memory"]:
                v = funcs.get(name)
                if not v:
                    continue
                ratio = v["mean"] / bare["mean"] if bare else None
                L.append(f"| {mode} | {name} | {rate(v['ops'])} | {dur(v['p50'])} | {dur(v['p99'])} | {fmt_ratio(ratio)} |")
        L.append("")
    if scale:
        L.append("## Scale")
        L.append("")
        if scale.get("quick"):
            L.append("**Quick mode: small sizes, not the figures the targets speak of.**")
            L.append("")
        L.append("`clear_expired` over expired sessions, while a probe task loads one live session")
        L.append("every millisecond: *probe max* is the longest such load, i.e. the longest a request")
        L.append("waited behind one clean-up statement (`ClearStats` reports no per-statement times).")
        L.append("")
        L.append("| medium | expired | removed | statements | total | mean per statement | probe max |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for key, label, count in [("postgres", "PostgreSQL (`clear_expired_in_batches`)", "rows"),
                                  ("sqlite", "SQLite file, WAL (`clear_expired_in_batches`)", "rows"),
                                  ("file", "FileStore (`clear_expired`)", "files")]:
            v = scale.get(key)
            if not v:
                continue
            st = v.get("statements")
            mean = f"{v['mean_statement_ms']:.2f} ms" if st else "-"
            L.append(f"| {label} | {v[count]:,} | {v['removed']:,} | {st if st else '-'} | {v['total_s']:.2f} s | {mean} | {v['probe_max_ms']:.2f} ms |")
        L.append("")
        m = scale.get("moka")
        if m:
            L.append(f"MokaStore, {m['sessions']:,} sessions of a {m['payload_bytes']}-byte JSON payload (each its own")
            L.append(f"dictionary): weighted size {m['weighted_bytes_per_session']:.0f} bytes per session (the store's")
            L.append(f"own estimate, what its byte bound counts); resident memory grew by")
            L.append(f"{m['rss_bytes_per_session']:.0f} bytes per session (RSS delta ÷ sessions, including allocator slack).")
            L.append("")
    load = ROOT / "tests" / "LOAD.md"
    if load.exists():
        # The load test is a separate program (60 s a store); its own page keeps the
        # figures of its last run, included here as they stand.
        text = load.read_text().rstrip().replace("# Load test:", "## Load test:", 1)
        L.append(text.replace("\n## ", "\n### "))
        L.append("")
    L += targets(res, scale)
    notes = ROOT / "benches" / "analysis.md"
    if notes.exists():
        L.append("")
        L.append(notes.read_text().rstrip())
    L.append("")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(L))
    print(f"wrote {ROOT / 'BENCHMARKS.md'} from {len(res)} measurements", file=sys.stderr)


def targets(res, scale):
    L = ["## Targets", ""]
    raw_miss, raw_n = [], 0
    peer_miss, peer_n = [], 0
    for store in STORES:
        for r in store_rows(res, store):
            if store in SERVER_SIDE and r["raw_ratio"] is not None:
                raw_n += 1
                if r["raw_ratio"] > 1.15:
                    raw_miss.append(f"{r['group']} {r['raw_ratio']:.2f}")
            if r["peer_ratio"] is not None:
                peer_n += 1
                if r["peer_ratio"] > 1 / 1.3:
                    peer_miss.append(f"{r['group']} (ours {1 / r['peer_ratio']:.2f}× {r['best'][0]})")
    L.append(f"1. **Server-side stores within 1.15× of the raw medium**: {raw_n - len(raw_miss)} of {raw_n} rows meet it.")
    if raw_miss:
        L.append(f"   Not met: {', '.join(raw_miss)}.")
    L.append(f"2. **At least 1.3× the best peer's throughput**: {peer_n - len(peer_miss)} of {peer_n} rows meet it.")
    if peer_miss:
        L.append(f"   Not met: {', '.join(peer_miss)}.")
    cookie = []
    for store in ["cookie-signed", "cookie-encrypted"]:
        for op, what in [("create", "encode"), ("load", "decode")]:
            r = res.get((f"{store}.{op}.1k.seq", "ours")), res.get((f"{store}.{op}.1k.seq", "raw"))
            if all(r):
                ratio = r[0]["mean"] / r[1]["mean"]
                cookie.append(f"{store} {what} {ratio:.2f}× ({'met' if ratio <= 1.2 else 'not met'})")
    if cookie:
        L.append(f"3. **Cookie store, 1 KiB, encode + decode within 1.2× of raw JSON + crypto + base64**: {', '.join(cookie)}.")
    e = {f: v for (g, f), v in res.items() if g == "e2e.request.seq"}
    if "ours-moka" in e and "bare" in e:
        ratio = e["ours-moka"]["mean"] / e["bare"]["mean"]
        ts = e.get("tower-sessions-moka")
        below = ts and e["ours-moka"]["mean"] < ts["mean"]
        L.append(
            f"4. **session-tower with MokaStore within 1.5× of a bare handler, below tower-sessions**: "
            f"{ratio:.2f}× the bare handler ({'met' if ratio <= 1.5 else 'not met'}); "
            + (f"{e['ours-moka']['mean'] / ts['mean']:.2f}× tower-sessions' time ({'met' if below else 'not met'})." if ts else "no tower-sessions figure.")
        )
    if scale:
        L.append("5. **Scale**: measured above (no numeric target in the issue).")
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run the benchmarks first")
    ap.add_argument("--cluster", action="store_true", help="start a local Redis Cluster for the run")
    args = ap.parse_args()
    if args.run:
        run(args)
    write(args)


if __name__ == "__main__":
    main()
