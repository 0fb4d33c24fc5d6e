"""Follows the demo through the collector's REST API: wires a signed webhook channel to the
project's alert rules, prints every new trust score with its reasons, every alert change and
every notification the local receiver got, then a summary. Exits non-zero when the demo did
not show what it is meant to show (trust falling after the drift, the drifted feature named,
the fairness alert firing, a signed webhook received).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MODEL = "credit-scoring"
DRIFTED_FEATURES = ("income", "debt_ratio", "age", "credit_history_months", "loan_amount")


class Api:
    def __init__(self, base: str, key: str, project: str) -> None:
        self.base, self.key, self.project = base.rstrip("/"), key, project

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("x-api-key", self.key)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}") from None
        return json.loads(raw) if raw else None

    def project_path(self) -> str:
        return f"/api/v1/projects/{self.project}"


def clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def wire_webhook(api: Api, url: str, secret: str) -> None:
    p = api.project_path()
    api.call("POST", f"{p}/channels", {"id": "demo-webhook", "kind": "webhook", "url": url, "signing_secret": secret})
    rules: list[dict[str, Any]] = []
    for _ in range(600):  # the defaults exist from `admin bootstrap` or the project's first window
        rules = api.call("GET", f"{p}/rules")["items"]
        if rules:
            break
        time.sleep(0.2)
    if not rules:
        raise RuntimeError("the project has no alert rules")
    for rule in rules:
        rule["channels"] = sorted(set(rule.get("channels") or []) | {"demo-webhook"})
        api.call("PUT", f"{p}/rules/{rule['id']}", rule)
        print(f"   rule {rule['id']}: {rule['metric']} {rule['comparator']} {rule['threshold']} "
              f"for {rule['for_windows']} window(s) → webhook", flush=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (exited, not yet reaped by the shell) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--project", default="demo")
    ap.add_argument("--webhook", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--received", required=True)
    ap.add_argument("--service-pid", type=int, required=True)
    ap.add_argument("--timeline", required=True, help="JSON written by simulate.py --timeline")
    ap.add_argument("--window-seconds", type=float, required=True)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to keep watching after the service ends")
    args = ap.parse_args()

    api = Api(args.api, args.key, args.project)
    print("== alert rules (the project's defaults) notify the local webhook", flush=True)
    wire_webhook(api, args.webhook, args.secret)
    timeline = Path(args.timeline)
    for _ in range(600):
        if timeline.exists() and timeline.stat().st_size:
            break
        time.sleep(0.1)
    drift_ms = json.loads(timeline.read_text())["drift_ms"]
    print(f"   drift and fairness regression start with the window at {clock(drift_ms)}", flush=True)
    print("== trust score per window (the model service is running)", flush=True)

    seen_windows: dict[int, str] = {}
    alert_status: dict[str, str] = {}
    fired: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []
    scores: dict[int, float] = {}
    reasons_after: list[str] = []
    deadline = None
    received_path = Path(args.received)
    while True:
        if deadline is None and not alive(args.service_pid):
            deadline = time.time() + args.settle
        if deadline is not None and time.time() > deadline:
            break
        trust = api.call("GET", f"{api.project_path()}/models/{MODEL}/trust?limit=200")["items"]
        for item in sorted(trust, key=lambda i: i["window_start_ms"]):
            start, rev = item["window_start_ms"], item.get("revision", "")
            if seen_windows.get(start) == rev:
                continue
            t = item["trust"]
            again = start in seen_windows
            seen_windows[start] = rev
            scores[start] = t["score"]
            phase = "after drift" if start + args.window_seconds * 1000 > drift_ms else "before drift"
            if again:
                print(f"[{clock(start)}] re-evaluated after late labels: trust {t['score']:5.1f}", flush=True)
                continue
            comps = " ".join(
                f"{c['component'][:5]}={c['score']:.0f}" for c in t["components"] if c["score"] is not None
            )
            print(f"[{clock(start)}] rows {item['rows']:>5}  trust {t['score']:5.1f}  "
                  f"trend {t['trend']['slope'] or 0:+.1f}/window  ({phase})\n      {comps}", flush=True)
            for r in t["reasons"][:4]:
                print(f"      - {r['text']}", flush=True)
            if phase == "after drift":
                reasons_after += [r["text"] for r in t["reasons"]]
        for a in api.call("GET", f"{api.project_path()}/alerts?limit=200")["items"]:
            al = a["alert"]
            key = al["dedup_key"]
            if alert_status.get(key) != al["status"]:
                alert_status[key] = al["status"]
                subject = f" [{al['subject']}]" if al["subject"] else ""
                print(f"  ALERT {al['status'].upper():8} {a['rule_id']}{subject} ({a['severity']}) "
                      f"value {al['last_value']:.3f}", flush=True)
                if al["status"] == "firing":
                    fired.append(a)
        if received_path.exists():
            lines = received_path.read_text().splitlines()
            for line in lines[len(received):]:
                r = json.loads(line)
                received.append(r)
                payload = r.get("payload") or {}
                alert = payload.get("alert") or {}
                subject = f" [{alert['subject']}]" if alert.get("subject") else ""
                print(f"  WEBHOOK {payload.get('type', '?')} {alert.get('rule_id', '')}{subject} "
                      f"— signature {'verified' if r['verified'] else 'INVALID'}", flush=True)
        time.sleep(1.0)

    before = [s for w, s in scores.items() if w + args.window_seconds * 1000 <= drift_ms]
    after = [s for w, s in scores.items() if w >= drift_ms]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    named = sorted({f for f in DRIFTED_FEATURES if any(f"`{f}`" in r for r in reasons_after)})
    fairness_fired = any(a["rule_id"] == "default-four-fifths" for a in fired)
    verified = sum(1 for r in received if r["verified"])
    print("\n== summary")
    print(f"   windows evaluated: {len(scores)}")
    print(f"   mean trust score before the drift: {mean(before):.1f}  after: {mean(after):.1f}")
    print(f"   drifted features named in the reasons: {', '.join(named) or 'none'}")
    print(f"   alerts that fired: {', '.join(sorted({a['rule_id'] for a in fired})) or 'none'}")
    print(f"   webhooks received: {len(received)} ({verified} with a valid signature)")
    ok = bool(before) and bool(after) and mean(after) < mean(before) and named and fairness_fired and verified > 0
    print("   demo " + ("showed everything it should" if ok else "did NOT show everything it should"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
