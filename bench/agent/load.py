"""Load generator and probe for bench/agent/run.sh: the agent's CPU and memory while several
SDK processes log predictions through the real Python SDK.

The parent forks ``--processes`` workers. Each builds its own ``neurocloak.Monitor`` (20 numeric
and 5 categorical features, binary classification with class scores, ids on a quarter of the
rows) and logs ``--rate / --processes`` rows per second in ``log_batch`` chunks every 50 ms,
paced against the clock so a late tick is caught up rather than lost. One categorical feature,
``worker``, holds the worker's own name: the collector's merged frequent items of that column
are exact, so they show per process that every row arrived, even though the agent merges the
processes' window parts into one.

Every second the parent samples the agent's CPU time (``/proc/PID/stat`` utime + stime), its
RSS (``/proc/PID/status`` VmRSS), the workers' CPU time, the rows logged so far and the agent's
``/metrics``. After the load every worker flushes and shuts its SDK down; the parent waits until
the agent's queue is empty, then compares the rows stored at the collector (REST API, read key)
with the rows logged. Exit status 1 if a single row is missing or extra, or anything was dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

import neurocloak

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = {
    "country": [f"c{i}" for i in range(30)],
    "device": ["ios", "android", "web", "tv"],
    "plan": ["free", "basic", "pro", "enterprise"],
    "channel": ["organic", "paid", "referral", "partner", "email", "social"],
}
CLASSES = ["no", "yes"]
TICK = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process; fields counted after the command name, which may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def scrape(url: str) -> dict[str, float]:
    """Agent metrics by name; labelled series are summed (``dropped_total`` over its reasons)."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0].removeprefix("neurocloak_agent_")
        out[name] = out.get(name, 0.0) + float(value)
    return out


def get_json(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"x-api-key": key})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def make_chunks(rng: np.random.Generator, worker: int, rows: int, count: int) -> list[dict[str, Any]]:
    """A pool of distinct chunks, prepared once so the timed loop only calls the SDK."""
    chunks = []
    for _ in range(count):
        data: dict[str, Any] = {name: rng.normal(i, 1 + i / 10, rows) for i, name in enumerate(NUMERIC)}
        for name, values in CATEGORICAL.items():
            # (codes, categories): the dictionary-encoded form the SDK reads without a copy.
            data[name] = (rng.integers(0, len(values), rows, dtype=np.int32), values)
        data["worker"] = (np.zeros(rows, dtype=np.int32), [f"w{worker}"])
        p = 1 / (1 + np.exp(-(data["x00"] - data["x01"] + 1)))
        scores = np.column_stack([1 - p, p])
        predictions = ((p >= 0.5).astype(np.int32), CLASSES)
        latencies = rng.gamma(2.0, 0.002, rows)
        chunks.append({"data": data, "predictions": predictions, "scores": scores, "latencies": latencies})
    return chunks


def work(worker: int, args: argparse.Namespace, logged: Any, start: float, end: float) -> dict[str, Any]:
    monitor = neurocloak.Monitor(
        project=args.project,
        model=args.model,
        version="v1",
        environment="bench",
        task="binary",
        features={**{n: "numeric" for n in NUMERIC}, **{n: "categorical" for n in [*CATEGORICAL, "worker"]}},
        classes=CLASSES,
        window_seconds=args.window_seconds,
        agent=args.agent,
    )
    rate = args.rate / args.processes
    rng = np.random.default_rng(1000 + worker)
    pool = make_chunks(rng, worker, max(1, round(rate * TICK)), 8)
    total = 0
    tick = 0
    while True:
        due = start + tick * TICK
        now = time.time()
        if due >= end:
            break
        if due > now:
            time.sleep(due - now)
        # Rows owed up to this tick: the rate holds when a tick's size is rounded, and a worker
        # that fell behind (CPU contention) catches up instead of silently logging less.
        owed = round(rate * (due - start + TICK)) - total
        chunk = pool[tick % len(pool)]
        while owed > 0:
            n = min(owed, len(chunk["latencies"]))
            data = {k: (v[0][:n], v[1]) if isinstance(v, tuple) else v[:n] for k, v in chunk["data"].items()}
            ids = [f"{worker}-{total + i}" if i % 4 == 0 else None for i in range(n)]
            monitor.log_batch(
                data,
                (chunk["predictions"][0][:n], CLASSES),
                ids=ids,
                latencies=chunk["latencies"][:n],
                scores=chunk["scores"][:n],
            )
            total += n
            owed -= n
        logged[worker] = total
        tick += 1
    finished = time.time()
    flushed = monitor.flush(30.0)
    stats = monitor.stats()
    closed = monitor.shutdown(30.0)
    return {"worker": worker, "rows": total, "finished": finished, "flushed": flushed, "shutdown": closed, "stats": stats}


def spawn(worker: int, args: argparse.Namespace, logged: Any, start: float, end: float) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        result = work(worker, args, logged, start, end)
        Path(args.work, f"worker-{worker}.json").write_text(json.dumps(result))
    except BaseException as e:  # noqa: BLE001 - report and end the worker
        print(f"worker {worker} failed: {e!r}", file=sys.stderr, flush=True)
        code = 1
    finally:
        os._exit(code)


def collector_view(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[int], dict[str, int]]:
    """All stored parts of the benchmark's model, their window starts, and the rows per worker
    from each window's merged ``worker`` column."""
    base = f"{args.api}/api/v1/projects/{args.project}/models/{args.model}/windows"
    parts: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = get_json(f"{base}?{urllib.parse.urlencode(q)}", args.read_key)
        parts += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    starts = sorted({p["window_start_ms"] for p in parts})
    per_worker: dict[str, int] = {}
    for s in starts:
        window = get_json(f"{base}/{s}?version=v1&environment=bench", args.read_key)
        for item in window["profile"]["features"]["worker"]["frequent"]["items"]:
            per_worker[item["value"]] = per_worker.get(item["value"], 0) + item["count"]
    return parts, starts, per_worker


def summary(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"mean": math.nan, "max": math.nan, "min": math.nan}
    return {"mean": statistics.fmean(xs), "max": max(xs), "min": min(xs)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="SDK endpoint of the agent, e.g. unix:///path.sock")
    ap.add_argument("--agent-pid", type=int, required=True)
    ap.add_argument("--agent-metrics", required=True, help="the agent's /metrics URL")
    ap.add_argument("--api", required=True, help="the collector's HTTP API base URL")
    ap.add_argument("--read-key", required=True)
    ap.add_argument("--project", default="bench")
    ap.add_argument("--model", default="agent-bench")
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--rate", type=float, default=100_000, help="rows per second, all processes together")
    ap.add_argument("--duration", type=float, default=75.0)
    ap.add_argument("--window-seconds", type=float, default=10.0)
    ap.add_argument("--work", required=True, help="directory for the workers' results")
    ap.add_argument("--delivery-timeout", type=float, default=120.0)
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if not (args.processes > 0 and args.rate > 0 and args.duration > 0):
        ap.error("--processes, --rate and --duration must be positive")

    logged = multiprocessing.RawArray("q", args.processes)
    # Workers start together on a whole second, a moment after the fork, so each second's
    # sample covers the same load.
    start = math.ceil(time.time()) + 1.0
    end = start + args.duration
    load_before = os.getloadavg()
    workers = [spawn(w, args, logged, start, end) for w in range(args.processes)]

    agent = args.agent_pid
    samples: list[dict[str, float]] = []
    time.sleep(max(0.0, start - time.time()))
    prev_t, prev_agent = time.time(), cpu_seconds(agent)
    prev_workers = sum(cpu_seconds(p) for p in workers)
    prev_rows = 0
    while time.time() < end - 0.5:
        time.sleep(max(0.0, prev_t + 1.0 - time.time()))
        t = time.time()
        a = cpu_seconds(agent)
        try:
            w = sum(cpu_seconds(p) for p in workers)
        except OSError:
            break  # a worker already exited: that is the end of the steady state
        rows = sum(logged)
        m = scrape(args.agent_metrics)
        dt = t - prev_t
        samples.append({
            "t": t - start,
            "agent_cpu_pct": 100 * (a - prev_agent) / dt,
            "agent_rss_mib": rss_mib(agent),
            "workers_cpu_pct": 100 * (w - prev_workers) / dt,
            "rows_per_s": (rows - prev_rows) / dt,
            "queue_depth": m.get("queue_depth", 0.0),
            "queue_bytes": m.get("queue_bytes", 0.0),
        })
        prev_t, prev_agent, prev_workers, prev_rows = t, a, w, rows
    load_during = os.getloadavg()

    failed = 0
    for pid in workers:
        _, status = os.waitpid(pid, 0)
        failed += int(status != 0)
    results = []
    for w in range(args.processes):
        path = Path(args.work, f"worker-{w}.json")
        if path.exists():
            results.append(json.loads(path.read_text()))
    logged_rows = {f"w{r['worker']}": r["rows"] for r in results}
    total_rows = sum(logged_rows.values())
    elapsed = max([end, *(r["finished"] for r in results)]) - start
    problems: list[str] = []
    if failed or len(results) != args.processes:
        problems.append(f"{failed} worker(s) failed, {len(results)} of {args.processes} reported")
    for r in results:
        s = r["stats"]
        if not (r["flushed"] and r["shutdown"]):
            problems.append(f"worker {r['worker']}: flush {r['flushed']}, shutdown {r['shutdown']}")
        if s["dropped"] or s["rejected"] or s["queued"] or s["sent"] != s["delivered"]:
            problems.append(f"worker {r['worker']}: SDK did not deliver everything: {s}")

    # Delivery: every part the agent received has been forwarded (window parts wait up to the
    # merge grace period before they leave).
    deadline = time.time() + args.delivery_timeout
    m: dict[str, float] = {}
    while True:
        try:
            m = scrape(args.agent_metrics)
        except OSError as e:
            problems.append(f"agent /metrics unreachable after the load: {e!r}")
            done = False
            break
        done = m.get("queue_depth", 1) == 0 and m.get("received_total", 0) == m.get("forwarded_total", -1)
        if done or time.time() > deadline:
            break
        time.sleep(0.5)
    agent_final = {k: m[k] for k in sorted(m) if not k.startswith("process_")}
    if not done:
        problems.append(f"agent still has {m.get('queue_depth')} queued records after {args.delivery_timeout}s")
    if m.get("dropped_total", 0):
        problems.append(f"agent dropped {m['dropped_total']} records")

    try:
        parts, starts, per_worker = collector_view(args)
    except (OSError, ValueError, KeyError, TypeError) as e:  # URLError is an OSError
        problems.append(f"could not read the stored windows from the collector: {e!r}")
        parts, starts, per_worker = [], [], {}
    stored_rows = sum(p["rows"] for p in parts)
    if stored_rows != total_rows:
        problems.append(f"collector stores {stored_rows} rows, workers logged {total_rows}")
    if per_worker != logged_rows:
        problems.append(f"rows per worker at the collector {per_worker} != logged {logged_rows}")

    steady = samples[1:] if len(samples) > 2 else samples  # the first second includes start-up
    report = {
        "processes": args.processes,
        "target_rows_per_s": args.rate,
        "duration_s": args.duration,
        "window_seconds": args.window_seconds,
        "rows_logged": total_rows,
        # Over the time the slowest worker really needed: a worker that fell behind ends late.
        "load_seconds": elapsed,
        "achieved_rows_per_s": total_rows / elapsed,
        "rows_per_s_per_second": summary([s["rows_per_s"] for s in steady]),
        "agent_cpu_pct_of_one_core": summary([s["agent_cpu_pct"] for s in steady]),
        "agent_rss_mib": summary([s["agent_rss_mib"] for s in samples]),
        "workers_cpu_pct_total": summary([s["workers_cpu_pct"] for s in steady]),
        "agent_queue_depth_max": max((s["queue_depth"] for s in samples), default=0),
        "agent_queue_bytes_max": max((s["queue_bytes"] for s in samples), default=0),
        "agent_metrics_final": agent_final,
        "collector_parts": len(parts),
        "collector_windows": len(starts),
        "collector_rows": stored_rows,
        "rows_per_worker": per_worker,
        "load_average_before": load_before,
        "load_average_during": load_during,
        "cpus": os.cpu_count(),
        "problems": problems,
    }
    if args.out:
        Path(args.out).write_text(json.dumps({**report, "samples": samples}, indent=2))

    cpu, rss, wk, rps = (report[k] for k in
                         ("agent_cpu_pct_of_one_core", "agent_rss_mib", "workers_cpu_pct_total", "rows_per_s_per_second"))
    print(f"achieved: {report['achieved_rows_per_s']:,.0f} rows/s in total ({total_rows:,} rows in {elapsed:.1f} s; "
          f"per second min {rps['min']:,.0f}, mean {rps['mean']:,.0f}, max {rps['max']:,.0f})")
    print(f"agent CPU (% of one core): mean {cpu['mean']:.2f}, max {cpu['max']:.2f}")
    print(f"agent RSS: mean {rss['mean']:.1f} MiB, max {rss['max']:.1f} MiB")
    print(f"agent queue: depth max {report['agent_queue_depth_max']:.0f} records, "
          f"bytes max {report['agent_queue_bytes_max']:,.0f}")
    print(f"SDK processes' CPU (all {args.processes}, % of one core): mean {wk['mean']:.0f}, max {wk['max']:.0f}")
    f = agent_final
    print(f"agent /metrics at the end: received {f.get('received_total', 0):.0f}, forwarded "
          f"{f.get('forwarded_total', 0):.0f}, dropped {f.get('dropped_total', 0):.0f}, queued "
          f"{f.get('queue_depth', 0):.0f}, queue bytes {f.get('queue_bytes', 0):.0f}, "
          f"batches {f.get('batches_sent_total', 0):.0f}, parts merged {f.get('parts_merged_total', 0):.0f}")
    print(f"collector: {len(parts)} stored parts in {len(starts)} windows, {stored_rows:,} rows; per process "
          + ", ".join(f"{k}={v:,}" for k, v in sorted(per_worker.items())))
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"at the end of the load {load_during[0]:.2f}/{load_during[1]:.2f}/{load_during[2]:.2f} on {os.cpu_count()} CPUs")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: every logged row is stored at the collector, per process, nothing dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
