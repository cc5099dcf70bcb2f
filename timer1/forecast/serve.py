"""A forecasting service on the standard library: one model in memory, requests batched by one worker.

    python -m timer1.forecast.serve --model timer1-tiny --host 127.0.0.1 --port 8000

    GET  /health    -> 200 {"status": "ok", "model": ..., "device": ..., "queued": n}
    GET  /metrics   -> 200 Prometheus text: requests by path and status, latency histogram, queue depth,
                       model load time (timer1.forecast.telemetry)
    POST /forecast  {"series": [..] | [[..], ..], "horizon": H, "quantiles": [0.1, 0.5, 0.9],
                     "mode": "auto" | "slow" | "single", "timestamps": [..] | [[..], ..]}   (all but series optional)
                    -> 200 {"forecast": [[..]], "quantiles": {"0.1": [[..]], ..}, "source": [..],
                            "timestamps": [[..]] (when given)}

Each request is checked in its own connection thread exactly as `timer1.Forecaster.predict` checks
its arguments; anything wrong is 400 ``{"error": "one line"}``, a path asked with the wrong method 405
(with ``Allow``). Checked requests wait in a bounded queue (full -> 503; the kernel's listen backlog is
sized for it, so a burst of connections is answered, not reset); ONE worker thread owns the model,
takes them in arrival order, groups what is waiting by (mode, horizon) and forecasts each group in one
batched call. Every series has its own seeded generator, so a response
equals ``Forecaster.predict(..., seed=SEED)`` whatever it was batched with. SIGTERM stops accepting,
finishes the requests already received, and exits 0. There is no authentication.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import numpy as np

from timer1.forecast.inputs import QUANTILES, check_mode, check_quantiles
from timer1.forecast.resolve import add_model_arguments
from timer1.forecast.telemetry import CONTENT_TYPE, ServiceMetrics
from timer1.util.cli import show_warnings_as_lines

if TYPE_CHECKING:   # torch comes in with the model, after the options and the port are checked
    from timer1.forecast.forecaster import Forecaster, Prepared

MAX_BODY = 1 << 20          # bytes of a request body, far beyond any look-back the model reads
QUEUE_SIZE = 64             # requests waiting for the worker before new ones get 503
MIN_BACKLOG = 128           # connections the kernel holds before they are accepted (Python's default is 5)
FIELDS = ("series", "horizon", "quantiles", "mode", "timestamps")
ROUTES = {"/health": "GET", "/metrics": "GET", "/forecast": "POST"}


@dataclass
class Job:
    """One checked request waiting for the worker, and its answer once done."""

    batch: Prepared
    mode: str
    levels: tuple[float, ...]
    done: threading.Event = field(default_factory=threading.Event)
    response: dict | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        """Requests with the same key go through one forecast call."""
        return self.mode, self.batch.windows[0].horizon


class Worker(threading.Thread):
    """The one thread that runs the model: takes the first waiting job, then (batching on) every job
    already queued up to ``max_series`` series, and forecasts each (mode, horizon) group at once."""

    def __init__(self, forecaster: Forecaster, jobs: queue.Queue, seed: int, batching: bool):
        super().__init__(name="forecast-worker", daemon=True)
        self.forecaster, self.jobs, self.seed, self.batching = forecaster, jobs, seed, batching

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            taken = [job]
            while self.batching and sum(len(j.batch.windows) for j in taken) < self.forecaster.batch:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:          # the stop signal: answer what was taken, then stop
                    self.jobs.put(None)
                    break
                taken.append(more)
            for key in dict.fromkeys(j.key for j in taken):
                self.answer([j for j in taken if j.key == key])

    def answer(self, group: list[Job]) -> None:
        """One forecast call for the group's series; each job gets its own rows."""
        windows = [w for j in group for w in j.batch.windows]
        levels = tuple(dict.fromkeys(q for j in group for q in j.levels))
        try:
            from timer1.forecast.forecaster import WindowHints

            hints = WindowHints([self.seed] * len(windows), [p for j in group for p in j.batch.periods],
                                [n for j in group for n in j.batch.nonnegative],
                                full=[f for j in group for f in j.batch.full],
                                steps=[step for j in group for step in j.batch.steps])
            out = self.forecaster.forecast_windows(windows, mode=group[0].mode, quantiles=levels, hints=hints)
        except Exception as err:  # the worker must outlive any one failure; the clients get a 500
            for job in group:
                job.error = f"forecast failed: {type(err).__name__}: {err}"
                job.done.set()
            return
        start = 0
        for job in group:
            rows = slice(start, start + len(job.batch.windows))
            start = rows.stop
            job.response = {"forecast": out.point[rows].tolist(),
                            "quantiles": {f"{q:g}": json_numbers(out.quantiles[q][rows]) for q in job.levels},
                            "source": out.source[rows]}
            if job.batch.dated:
                job.response["timestamps"] = job.batch.future_dates()
            job.done.set()


def json_numbers(values: np.ndarray) -> list:
    """Rows of numbers for a JSON body, NaN (a level without a band) as null."""
    return [[None if math.isnan(v) else v for v in row] for row in values.tolist()]


class NonFinite(ValueError):
    """NaN / Infinity in a body: JSON's extensions Python accepts, refused as values."""


def parse_request(body: bytes, forecaster: Forecaster) -> Job:
    """A request body as a checked Job; ValueError with one line for anything wrong."""
    def no_constants(name: str):
        raise NonFinite(f"{name} is not a finite number (use null for a missing value)")

    try:
        payload = json.loads(body, parse_constant=no_constants)
    except NonFinite:
        raise
    except ValueError as err:
        raise ValueError(f"the body is not valid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(payload, dict):
        raise ValueError('the body must be a JSON object like {"series": [1, 2, 3, ...], "horizon": 12}')
    unknown = [k for k in payload if k not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    if "series" not in payload:
        raise ValueError('"series" is required: a list of numbers, or a list of such lists')
    mode = payload.get("mode", "auto")
    check_mode(mode)
    quantiles = payload.get("quantiles", list(QUANTILES))
    if not isinstance(quantiles, list) or not all(isinstance(q, (int, float)) and not isinstance(q, bool)
                                                  for q in quantiles):
        raise ValueError('"quantiles" must be a list of numbers between 0 and 1')
    levels = check_quantiles(quantiles)
    batch = forecaster.prepare(payload["series"], payload.get("horizon"), payload.get("timestamps"))
    return Job(batch, mode, levels)


class Service(ThreadingHTTPServer):
    """The HTTP server, its forecaster and the worker's queue. Connection threads are joined on
    close (``daemon_threads = False``), so a stop answers every request already received."""

    daemon_threads = False

    def __init__(self, address, forecaster: Forecaster, *, seed: int = 0, batching: bool = True,
                 queue_size: int = QUEUE_SIZE, log=None, load_seconds: float | None = None):
        # listen()'s backlog: a burst of clients connecting at once waits in the kernel until the accept
        # loop takes each (then 200 or 503); socketserver's default of 5 reset the 6th of 16 at once
        self.request_queue_size = max(MIN_BACKLOG, 2 * queue_size)
        super().__init__(address, Handler)
        self.forecaster, self.log = forecaster, log
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self.metrics = ServiceMetrics(ROUTES, load_seconds)
        self.worker = Worker(forecaster, self.jobs, seed, batching)
        self.worker.start()

    def close(self) -> None:
        """Wait for the connection threads (their jobs are answered), then stop the worker."""
        self.server_close()
        self.jobs.put(None)
        self.worker.join()


class Handler(BaseHTTPRequestHandler):
    server: Service
    server_version = "timer1-serve"

    def parse_request(self) -> bool:
        """The standard parse, with the clock started: a request's latency runs from here (its first
        line read; time a kept-alive connection sat idle before it is not the service's)."""
        self.started = time.perf_counter()
        return super().parse_request()

    def do_GET(self) -> None:
        if not self.route():
            return
        if self.path == "/metrics":
            text = self.server.metrics.render(self.server.jobs.qsize())
            return self.send(200, text.encode(), CONTENT_TYPE)
        forecaster = self.server.forecaster
        self.reply(200, {"status": "ok", "model": forecaster.name, "device": forecaster.device,
                         "queued": self.server.jobs.qsize()})

    def do_POST(self) -> None:
        if not self.route():
            return
        try:
            job = parse_request(self.read_body(), self.server.forecaster)
        except ValueError as err:
            return self.reply(400, {"error": str(err)})
        try:
            self.server.jobs.put_nowait(job)
        except queue.Full:
            return self.reply(503, {"error": f"busy: {self.server.jobs.maxsize} requests are waiting; retry later"})
        job.done.wait()
        if job.error is not None:
            return self.reply(500, {"error": job.error})
        self.reply(200, job.response)

    def route(self) -> bool:
        """Whether this request's path takes its method; else it is answered 404 (no such path) or 405
        (a path of the service asked with another method, the one it takes named in ``Allow``)."""
        allowed, method = ROUTES.get(self.path), self.command
        if allowed == method:
            return True
        usage = "use GET /health, GET /metrics or POST /forecast"
        if allowed is None:
            self.reply(404, {"error": f"no such path {self.path}; {usage}"})
        else:
            self.close_connection = True  # a body sent with the wrong method is never read
            self.reply(405, {"error": f"{self.path} takes {allowed}, not {method}; {usage}"}, {"Allow": allowed})
        return False

    do_PUT = do_DELETE = do_PATCH = route   # never allowed: 404 or 405 as above

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ValueError("a Content-Length header with the body's size in bytes is required")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the unread body must not be taken for the next request
            raise ValueError(f"the body is {int(length)} bytes; at most {MAX_BODY} are accepted")
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise ValueError(f"the body ended after {len(body)} of {length} bytes")
        return body

    def reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json", headers)

    def send(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        """Count the answer in /metrics, then send it: counted first, so a client that has its answer
        finds it counted by its next request (a request's time runs to its answer being ready)."""
        self.server.metrics.observe(self.path, status, time.perf_counter() - self.started)
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client went away: nothing to answer, the service goes on

    def log_message(self, format: str, *args) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m timer1.forecast.serve",
        allow_abbrev=False,
        description="Serve timer1 forecasts over HTTP: GET /health, GET /metrics (Prometheus), POST /forecast (JSON). One model in "
                    "memory; concurrent requests are batched by one worker thread.",
        epilog=f"Request bodies over {MAX_BODY} bytes, bad JSON or values get 400 with one-line JSON errors; a full "
               "queue gets 503. SIGTERM finishes the requests already received and exits 0.")
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port, printed)")
    parser.add_argument("--samples", type=int, default=8, help="slow mode: drafts per round (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="slow mode: draft rounds at most (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of every series (default 0)")
    parser.add_argument("--queue", type=int, default=QUEUE_SIZE,
                        help=f"requests that may wait for the worker before 503 (default {QUEUE_SIZE})")
    parser.add_argument("--no-batching", action="store_true",
                        help="forecast one request per model call (for comparison; batching is on by default)")
    return parser


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_port(host: str, port: int) -> None:
    """ValueError naming host and port when nothing could listen there (in use, not this machine's
    address, a privileged port): a bind on a throwaway socket, as the server's own bind will be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as HTTPServer binds
            probe.bind((host, port))
    except OSError as err:
        hint = " (another server is using it: stop it or pick another --port)" if err.errno == errno.EADDRINUSE else ""
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}{hint}") from None


def serve(args) -> int:
    if args.samples < 1 or args.rounds < 1 or args.queue < 1:
        raise ValueError(f"--samples, --rounds and --queue must be at least 1, got {args.samples}, "
                         f"{args.rounds}, {args.queue}")
    if not 0 <= args.port <= 65535:  # checked before the model loads; bind() would raise OverflowError
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    check_port(args.host, args.port)   # a port in use is said before a model loads for nothing
    started = time.perf_counter()
    from timer1.core.slow_think import SlowThinkConfig
    from timer1.forecast.forecaster import Forecaster

    forecaster = Forecaster.from_pretrained(args.model, args.adapter, args.device, args.dtype, threads=args.threads,
                                            judge=args.judge,
                                            config=SlowThinkConfig(samples=args.samples, rounds=args.rounds))
    load_seconds = time.perf_counter() - started
    try:
        service = Service((args.host, args.port), forecaster, seed=args.seed, batching=not args.no_batching,
                          queue_size=args.queue, log=log, load_seconds=load_seconds)
    except OSError as err:   # taken while the model loaded
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    host, port = service.server_address[:2]
    log(f"loaded {forecaster.name} on {forecaster.device} in {load_seconds:.1f} s; "
        f"serving on http://{host}:{port} (POST /forecast, GET /health, GET /metrics)")

    def stop(signum, frame):  # serve_forever runs in this thread: shutdown() must come from another
        log(f"{signal.Signals(signum).name}: finishing the requests received, then exiting")
        threading.Thread(target=service.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.serve_forever()
    service.close()
    log("stopped")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    show_warnings_as_lines()
    try:
        return serve(args)
    except (ValueError, OSError) as err:
        log(f"error: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
