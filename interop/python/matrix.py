#!/usr/bin/env python3
"""Run contract.py for every client × transport × protocol, each against its own test server.

    python matrix.py [--out DIR] [--only CLIENT]

Starts target/debug/signalr-testserver (or $SIGNALR_TESTSERVER_BIN) with
`--port 0 --max-message-size 1000000` and RUST_LOG=debug for each run (plus
`--stateful-reconnect` for the stateful runs), runs contract.py with SIGNALR_PY_DUMP=1, and
keeps in DIR (default $TMPDIR/signalr-py-interop) per run: NAME.server.log (server stderr),
NAME.client.log (client stderr: logs, step markers, frame dumps) and NAME.json (the report).
Prints one line per run and the total 'N passed, N failed, N skipped' of all steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SERVER = Path(os.environ.get("SIGNALR_TESTSERVER_BIN", ROOT / "target" / "debug" / "signalr-testserver"))
CLIENTS = ["signalrcore", "pysignalr", "aiosignalr"]
TRANSPORTS = ["ws", "sse", "lp"]
PROTOCOLS = ["json", "messagepack"]
# Server log lines worth showing next to a failure.
SERVER_MARKS = ("with an error", "socket error", "refused a request", "aborted why", " WARN ", " ERROR ")


def start_server(extra, log_path):
    log = open(log_path, "wb")
    env = dict(os.environ, RUST_LOG="debug")
    server = subprocess.Popen(
        [str(SERVER), "--port", "0", "--max-message-size", "1000000", *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    line = server.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise RuntimeError(f"the server printed {line!r}")
    return server, line.removeprefix("listening on ")


def run_one(out, client, transport, protocol, stateful):
    name = f"{client}-{transport}-{protocol}" + ("-stateful" if stateful else "")
    server, url = start_server(["--stateful-reconnect"] if stateful else [], out / f"{name}.server.log")
    try:
        flags = ["--stateful"] if stateful else ["--reconnect"]
        with open(out / f"{name}.client.log", "wb") as client_log:
            done = subprocess.run(
                [sys.executable, str(HERE / "contract.py"), client, url, transport, protocol, *flags],
                stdout=subprocess.PIPE,
                stderr=client_log,
                env=dict(os.environ, SIGNALR_PY_DUMP="1"),
                timeout=90,
            )
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    text = done.stdout.decode().strip()
    (out / f"{name}.json").write_text(text + "\n")
    report = json.loads(text) if text else {"steps": {}, "passed": 0, "failed": 1, "skipped": 0}
    return name, done.returncode, report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=Path(tempfile.gettempdir()) / "signalr-py-interop", type=Path)
    parser.add_argument("--only", choices=CLIENTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    runs = [(c, t, p, False) for c in CLIENTS for t in TRANSPORTS for p in PROTOCOLS]
    runs += [(c, "ws", p, True) for c in CLIENTS for p in PROTOCOLS]
    totals = [0, 0, 0]
    for client, transport, protocol, stateful in runs:
        if args.only and client != args.only:
            continue
        name, code, report = run_one(args.out, client, transport, protocol, stateful)
        if code == 3:
            print(f"{name:40} {report['steps'].get('start', '')}")
            continue
        counts = (report["passed"], report["failed"], report["skipped"])
        totals = [a + b for a, b in zip(totals, counts)]
        failures = [f"{k}: {v}" for k, v in report["steps"].items() if v != "ok" and not v.startswith("skipped:")]
        print(f"{name:40} exit {code}  {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
        for failure in failures:
            print(f"    {failure}")
        if failures:
            for line in (args.out / f"{name}.server.log").read_text(errors="replace").splitlines():
                if any(mark in line for mark in SERVER_MARKS):
                    print(f"    server: {line[:300]}")
        sys.stdout.flush()
    print(f"logs in {args.out}")
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")


if __name__ == "__main__":
    main()
