"""Requests per second and p50/p95 latency of ``python -m timer1.serve`` at 1, 4 and 16 concurrent
clients, single and slow mode, with the worker's batching on and off. A script, not a test.

    OMP_NUM_THREADS=1 python benchmarks/serve.py                      # timer1-tiny, horizon 24
    python benchmarks/serve.py --model DIR --clients 1 4 --requests 2

The service runs as its own process on 127.0.0.1 (an ephemeral port), started once with batching
and once with ``--no-batching``. Each client sends ``--requests`` POST /forecast requests one after
another, each one series of 96 hourly values (every request different) and a horizon of 24; latency
is from sending a request to reading its whole answer, requests/s is all requests over the wall time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def start_service(model: str | None, batching: bool) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "timer1.serve", "--port", "0"] + (["--model", model] if model else []) \
        + ([] if batching else ["--no-batching"])
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    line = ""
    while "serving on" not in line:
        line = process.stderr.readline()
        if not line:
            raise SystemExit(f"the service did not start: {process.stderr.read()}")
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its log pipe drained
    return process, int(line.split("http://127.0.0.1:")[1].split()[0])


def request_body(k: int, mode: str, horizon: int) -> bytes:
    t = np.arange(96)
    values = 20 + 5 * np.sin(2 * np.pi * t / 24 + k) + 0.01 * k * t
    return json.dumps({"series": np.round(values, 4).tolist(), "horizon": horizon, "mode": mode}).encode()


def post(port: int, body: bytes) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/forecast", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}")
    return time.perf_counter() - started


def load(port: int, clients: int, requests: int, mode: str, horizon: int) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of ``clients`` threads sending ``requests`` requests each."""
    latencies: list[float] = []

    def client(c: int) -> None:
        for r in range(requests):
            latencies.append(post(port, request_body(c * requests + r, mode, horizon)))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name, directory or run (default timer1-tiny)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--modes", nargs="+", default=["single", "slow"], choices=["single", "slow"])
    args = parser.parse_args()
    print("| mode | batching | clients | requests | requests/s | p50 s | p95 s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for batching in (True, False):
        process, port = start_service(args.model, batching)
        try:
            for mode in args.modes:
                post(port, request_body(0, mode, args.horizon))  # warm-up: first-call allocations
                for clients in args.clients:
                    wall, latencies = load(port, clients, args.requests, mode, args.horizon)
                    p50, p95 = np.percentile(latencies, [50, 95])
                    print(f"| {mode} | {'on' if batching else 'off'} | {clients} | {len(latencies)} | "
                          f"{len(latencies) / wall:.2f} | {p50:.2f} | {p95:.2f} |", flush=True)
        finally:
            process.terminate()
            process.wait(600)


if __name__ == "__main__":
    main()
