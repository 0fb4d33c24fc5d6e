"""A local webhook receiver for the demo: verifies NeuroCloak's HMAC-SHA256 signature on
every notification and appends what it received to a JSON-lines file.

    python webhook_receiver.py --port 0 --secret S --out received.jsonl --port-file port.txt
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    """The verification recipe of docs/alerts.md."""
    try:
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
    except ValueError:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(expected, part.strip()[3:])
        for part in signature.split(",")
        if part.strip().startswith("v1=")
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    secret = args.secret.encode()
    out = Path(args.out)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            ts = self.headers.get("X-NeuroCloak-Timestamp", "")
            sig = self.headers.get("X-NeuroCloak-Signature", "")
            ok = verify(secret, ts, body, sig)
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            with out.open("a") as f:
                f.write(json.dumps({"path": self.path, "verified": ok, "payload": payload}) + "\n")
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    Path(args.port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
