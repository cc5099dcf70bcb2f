"""Requests per second and p50/p95 latency of ``python -m timer1.forecast.serve`` at 1, 4 and 16 concurrent
clients, single and slow mode, with the worker's batching on and off. A script, not a test.

    OMP_NUM_THREADS=1 python benchmarks/serve.py                      # timer1-tiny, horizon 24
    python benchmarks/serve.py --model DIR --clients 1 4 --requests 2
    OMP_NUM_THREADS=1 python benchmarks/serve.py --burst 64           # 64 clients at the same instant

The service runs as its own process on 127.0.0.1 (an ephemeral port), started once with batching
and once with ``--no-batching``. Each client sends ``--requests`` POST /forecast requests one after
another, each one series of 96 hourly values (every request different) and a horizon of 24; latency
is from sending a request to reading its whole answer, requests/s is all requests over the wall time.
``--burst N`` instead sends N different requests one at a time, then the same N from N clients that
connect at the same instant (a barrier), and counts 200s, 503s, connection errors (a reset) and
answers that differ from the one-at-a-time answer (batching must not change a forecast).
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
    command = [sys.executable, "-m", "timer1.forecast.serve", "--port", "0"] + (["--model", model] if model else []) \
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


def send(port: int, body: bytes) -> tuple[int, bytes]:
    """(status, answer) of one POST /forecast on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/forecast", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    return response.status, answer


def post(port: int, body: bytes) -> float:
    started = time.perf_counter()
    status, _ = send(port, body)
    if status != 200:
        raise RuntimeError(f"status {status}")
    return time.perf_counter() - started


def burst(port: int, clients: int, mode: str, horizon: int) -> dict:
    """The same ``clients`` requests one at a time, then all at the same instant: counts per outcome."""
    bodies = [request_body(k, mode, horizon) for k in range(clients)]
    alone = [send(port, body) for body in bodies]
    together: dict[int, tuple[int, bytes]] = {}
    errors: list[str] = []
    ready = threading.Barrier(clients)

    def client(k: int) -> None:
        ready.wait()
        try:
            together[k] = send(port, bodies[k])
        except OSError as err:   # a reset or a refused connection
            errors.append(repr(err))

    wall = in_threads(client, clients)
    statuses = [status for status, _ in together.values()]
    return {"wall": wall, "ok": statuses.count(200), "busy": statuses.count(503),
            "errors": len(errors), "differ": sum(together[k] != alone[k] for k in together if together[k][0] == 200)}


def load(port: int, clients: int, requests: int, mode: str, horizon: int) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of ``clients`` threads sending ``requests`` requests each."""
    latencies: list[float] = []

    def client(c: int) -> None:
        for r in range(requests):
            latencies.append(post(port, request_body(c * requests + r, mode, horizon)))

    return in_threads(client, clients), latencies


def in_threads(client, count: int) -> float:
    """``client(0)`` ... ``client(count - 1)``, each in its own thread; the wall seconds until all end."""
    threads = [threading.Thread(target=client, args=(k,)) for k in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name, directory or run (default timer1-tiny)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--modes", nargs="+", default=["single", "slow"], choices=["single", "slow"])
    parser.add_argument("--burst", type=int, default=0, metavar="N", help="N clients at once (see above)")
    args = parser.parse_args()
    if args.burst:
        return burst_table(args)
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


def burst_table(args) -> None:
    print("| mode | clients at once | 200 | 503 | connection errors | 200s unlike the one-at-a-time answer | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    process, port = start_service(args.model, batching=True)
    try:
        for mode in args.modes:
            counts = burst(port, args.burst, mode, args.horizon)
            print(f"| {mode} | {args.burst} | {counts['ok']} | {counts['busy']} | {counts['errors']} | "
                  f"{counts['differ']} | {counts['wall']:.1f} |", flush=True)
    finally:
        process.terminate()
        process.wait(600)


if __name__ == "__main__":
    main()
