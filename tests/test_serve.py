"""timer1.forecast.serve over real HTTP on 127.0.0.1 (an ephemeral port): health, forecasts equal to the
Python API's, every bad request's status and message, wrong methods (405 with Allow), 64 clients
connecting at once (none reset; with a small queue the rest get 503), a 503 on a full queue and
arrival order, clients that vanish mid-request, and SIGTERM finishing in-flight work (a subprocess)."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from timer1.core.slow_think import SlowThinkConfig
from timer1.forecast.forecaster import Forecaster
from timer1.forecast.serve import MAX_BODY, Service, main

REPO = Path(__file__).resolve().parents[1]
SEED = 0


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster.from_pretrained("timer1-tiny", config=SlowThinkConfig(samples=2, rounds=1))


def start(forecaster, **options) -> tuple[Service, int]:
    service = Service(("127.0.0.1", 0), forecaster, seed=SEED, **options)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    return service, service.server_address[1]


@pytest.fixture(scope="module")
def server(forecaster):
    service, port = start(forecaster)
    yield port
    service.shutdown()
    service.close()


def call(port: int, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    return call_with_headers(port, method, path, body, raw)[:2]


def call_with_headers(port: int, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, JSON answer, response headers) of one request on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload, response.headers


def series(k: int, n: int = 48) -> list[float]:
    t = np.arange(n)
    return np.round(10 + 3 * np.sin(2 * np.pi * t / 12 + k) + 0.1 * k * t / n, 4).tolist()


def test_health(server, forecaster):
    assert call(server, "GET", "/health") == (200, {"status": "ok", "model": forecaster.name, "device": "cpu",
                                                    "queued": 0})


def test_forecasts_equal_the_api(server, forecaster):
    dates = [f"2021-01-{d:02d}" for d in range(1, 29)] + [f"2021-02-{d:02d}" for d in range(1, 21)]
    body = {"series": [series(1), series(2, 30)], "horizon": 6, "quantiles": [0.1, 0.5, 0.9], "mode": "slow",
            "timestamps": [dates, dates[:30]]}
    status, answer = call(server, "POST", "/forecast", body)
    assert status == 200, answer
    expected = forecaster.predict(body["series"], 6, quantiles=(0.1, 0.5, 0.9), timestamps=body["timestamps"],
                                  seed=SEED, mode="slow")
    assert answer["forecast"] == expected.point.tolist() and answer["source"] == expected.source
    assert answer["quantiles"] == {f"{q:g}": expected.quantiles[q].tolist() for q in (0.1, 0.5, 0.9)}
    assert answer["timestamps"] == expected.timestamps and answer["timestamps"][1][0] == "2021-02-03"
    status, single = call(server, "POST", "/forecast", {"series": series(3), "horizon": 4, "mode": "single"})
    assert status == 200 and single["forecast"] == forecaster.predict(series(3), 4, mode="single").point.tolist()
    assert "timestamps" not in single and list(single["quantiles"]) == ["0.1", "0.5", "0.9"]


@pytest.mark.parametrize("body, message", [
    (b"{not json", "the body is not valid JSON"),
    (b"[1, 2, 3]", "the body must be a JSON object"),
    (b'{"horizon": 4}', '"series" is required'),
    (b'{"series": "1,2,3"}', "context must be a non-empty list"),
    (b'{"series": [1, 2, "x", 4, 5, 6, 7, 8]}', "series 0 must be a non-empty list of numbers"),
    (b'{"series": [1, 2, NaN, 4, 5, 6, 7, 8]}', "NaN is not a finite number (use null for a missing value)"),
    (b'{"series": [1, 2, 1e999, 4, 5, 6, 7, 8]}', "series 0 holds inf at position 2: not a finite number"),
    (b'{"series": [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, -1e999]]}', "series 1 holds -inf at position 7"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "horizon": 4.5}', "horizon must be a positive whole number"),
    (b'{"series": [1, 2, 3]}', "series 0 has 3 values; at least 8 are needed"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "horizon": 385}', "horizon 385 is more than 384 steps"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "horizon": "12"}', "horizon must be a positive whole number"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "quantiles": ["0.5"]}', '"quantiles" must be a list of numbers'),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "quantiles": [0.5, 1.0]}', "strictly between 0 and 1"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "mode": "fast"}', "mode must be one of auto, rule, slow, single"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "seed": 1}', "unknown field 'seed'"),
    (b'{"series": [1, 2, 3, 4, 5, 6, 7, 8], "timestamps": ["x"]}', "1 timestamps for 8 values"),
])
def test_bad_requests_get_400_and_one_line(server, body, message):
    status, answer = call(server, "POST", "/forecast", raw=body)
    assert status == 400 and list(answer) == ["error"], answer
    assert message in answer["error"] and "\n" not in answer["error"]


def test_body_over_the_limit_and_unknown_paths(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    connection.putrequest("POST", "/forecast")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()                      # the body is never sent: refused on its stated size
    response = connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read()) == {"error": f"the body is {MAX_BODY + 1} bytes; at most {MAX_BODY} are accepted"}
    connection.close()
    assert call(server, "GET", "/nope")[0] == 404 and call(server, "POST", "/nope", {})[0] == 404


@pytest.mark.parametrize("method, path, allowed", [("GET", "/forecast", "POST"), ("PUT", "/forecast", "POST"),
                                                   ("POST", "/health", "GET"), ("DELETE", "/health", "GET")])
def test_a_path_asked_with_the_wrong_method_gets_405_naming_the_right_one(server, method, path, allowed):
    status, answer, headers = call_with_headers(server, method, path, {"series": series(0)})
    assert status == 405 and headers["Allow"] == allowed
    assert answer == {"error": f"{path} takes {allowed}, not {method}; use GET /health, GET /metrics or POST /forecast"}
    assert call(server, "GET", "/health")[0] == 200       # the unread body did not confuse the server


def test_a_whole_number_horizon_written_as_a_float_is_that_horizon(server, forecaster):
    body = {"series": series(4), "horizon": 5.0, "mode": "single"}
    status, answer = call(server, "POST", "/forecast", body)
    assert status == 200 and answer["forecast"] == forecaster.predict(series(4), 5, mode="single").point.tolist()


def burst(port: int, bodies: list[dict], answers: dict | None = None) -> tuple[dict, list[str]]:
    """Every body from its own client thread, all connecting at once (a barrier): {k: (status,
    answer)} (filled into ``answers`` as they come) and the connection errors (a reset, a refusal)."""
    answers, errors, ready = {} if answers is None else answers, [], threading.Barrier(len(bodies))

    def client(k: int) -> None:
        ready.wait()
        try:
            answers[k] = call(port, "POST", "/forecast", bodies[k])
        except Exception as err:                 # any connection failure fails the test
            errors.append(repr(err))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, errors


def held_forecaster(forecaster):
    """A forecaster whose worker blocks in each call until ``release`` is set (``entered`` says it is
    holding a call); ``order`` records the first value of each call's first window, in call order."""
    entered, release, order = threading.Event(), threading.Event(), []
    blocked = Forecaster(forecaster.policy, name="held", config=forecaster.config, max_new_tokens=96)
    original = blocked.forecast_windows

    def held(windows, **kwargs):
        order.append(float(windows[0].history[0]))
        entered.set()
        release.wait(60)
        return original(windows, **kwargs)

    blocked.forecast_windows = held
    return blocked, entered, release, order


BURST = 64


def burst_bodies() -> list[dict]:
    return [{"series": series(k, 48 + k % 9), "horizon": 3 + k % 3, "mode": ("single", "slow")[k % 2]}
            for k in range(BURST)]


def test_64_clients_at_once_each_get_the_answer_they_get_alone(forecaster):
    fast = Forecaster(forecaster.policy, name="fast", config=forecaster.config, max_new_tokens=96)
    service, port = start(fast)
    bodies = burst_bodies()
    alone = {k: call(port, "POST", "/forecast", body) for k, body in enumerate(bodies)}   # one at a time
    answers, errors = burst(port, bodies)
    service.shutdown()
    service.close()
    assert errors == [] and sorted(answers) == list(range(BURST))
    assert all(status == 200 for status, _ in alone.values())
    assert sum(source == "model" for _, a in alone.values() for source in a["source"]) > BURST // 4
    for k, (status, answer) in answers.items():
        assert status == 200 and answer == alone[k][1], k      # batched with others, yet the same


def test_64_clients_at_once_on_a_small_queue_get_200_or_503_and_none_is_reset(forecaster):
    blocked, entered, release, _ = held_forecaster(forecaster)
    service, port = start(blocked, queue_size=8, batching=False)
    bodies, answers, errors = burst_bodies(), {}, []
    sender = threading.Thread(target=lambda: errors.extend(burst(port, bodies, answers)[1]))
    sender.start()
    assert entered.wait(30)                      # the worker holds one request, at most 8 wait behind it
    deadline = time.time() + 60                  # until every client is answered (503) or waiting
    while len(answers) + len(errors) + service.jobs.qsize() + 1 < BURST and time.time() < deadline:
        time.sleep(0.05)
    release.set()
    sender.join(120)
    service.shutdown()
    service.close()
    assert errors == [] and sorted(answers) == list(range(BURST))
    statuses = [status for status, _ in answers.values()]
    assert set(statuses) <= {200, 503} and 8 <= statuses.count(200) <= 9
    assert all(answer == {"error": "busy: 8 requests are waiting; retry later"}
               for status, answer in answers.values() if status == 503)
    fast = Forecaster(forecaster.policy, name="fast", config=forecaster.config, max_new_tokens=96)
    for k, (status, answer) in answers.items():
        if status == 200:
            body = bodies[k]
            expected = fast.predict(body["series"], body["horizon"], mode=body["mode"], seed=SEED)
            assert answer["forecast"] == expected.point.tolist(), k


def test_a_full_queue_gets_503_and_requests_are_answered_in_arrival_order(forecaster):
    blocked, entered, release, order = held_forecaster(forecaster)
    service, port = start(blocked, queue_size=2, batching=False)
    results = []

    def send(k: int) -> threading.Thread:
        body = {"series": series(k), "horizon": 3, "mode": "single"}
        thread = threading.Thread(target=lambda: results.append((k, call(port, "POST", "/forecast", body)[0])))
        thread.start()
        return thread

    clients = [send(0)]
    assert entered.wait(10)                       # the worker holds the first request
    for k in (1, 2):                              # then two wait in the queue, in this order
        clients.append(send(k))
        deadline = time.time() + 10
        while service.jobs.qsize() < k and time.time() < deadline:
            time.sleep(0.02)
    assert call(port, "POST", "/forecast", {"series": series(3), "horizon": 3}) == \
        (503, {"error": "busy: 2 requests are waiting; retry later"})
    release.set()
    for client in clients:
        client.join()
    service.shutdown()
    service.close()
    assert results == [(0, 200), (1, 200), (2, 200)]
    assert order == [series(k)[0] for k in range(3)]      # the worker took them as they came


def test_clients_that_vanish_do_not_stop_the_server(server):
    body = json.dumps({"series": series(5), "horizon": 3, "mode": "single"}).encode()
    half = socket.create_connection(("127.0.0.1", server))   # stops halfway through its body
    half.sendall(b"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    half.close()
    impatient = socket.create_connection(("127.0.0.1", server))   # leaves before its answer is written
    impatient.sendall(b"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    impatient.close()
    time.sleep(0.5)
    assert call(server, "GET", "/health")[0] == 200
    status, answer = call(server, "POST", "/forecast", raw=body)
    assert status == 200 and len(answer["forecast"][0]) == 3


@pytest.mark.parametrize("argv, message", [
    (["--port", "80000"], "error: --port must be between 0 and 65535, got 80000"),
    (["--port", "-1"], "error: --port must be between 0 and 65535, got -1"),
    (["--queue", "0"], "error: --samples, --rounds and --queue must be at least 1, got 8, 2, 0"),
])
def test_bad_options_are_one_line_before_the_model_loads(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(Forecaster, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


def test_a_port_in_use_is_one_line(forecaster, capsys, monkeypatch):
    monkeypatch.setattr(Forecaster, "from_pretrained", lambda *a, **k: forecaster)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["--port", str(taken.getsockname()[1])]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Address already in use" in err and err.count("\n") == 1


def test_sigterm_finishes_the_request_in_flight_and_exits_0():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TIMER1_MODEL", None)
    process = subprocess.Popen([sys.executable, "-m", "timer1.forecast.serve", "--port", "0", "--samples", "4", "--rounds", "1"],
                               cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "serving on" not in line:
            line = process.stderr.readline()
            assert line, "the service exited before serving"
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        results = []
        body = {"series": [series(k) for k in range(8)], "horizon": 24, "mode": "slow"}
        client = threading.Thread(target=lambda: results.append(call(port, "POST", "/forecast", body)))
        client.start()
        time.sleep(1.0)                                      # the request is being forecast
        process.send_signal(signal.SIGTERM)
        client.join(120)
        assert process.wait(120) == 0
        assert results and results[0][0] == 200 and len(results[0][1]["forecast"]) == 8
        rest = process.stderr.read()
        assert "SIGTERM: finishing the requests received" in rest and "Traceback" not in rest
    finally:
        if process.poll() is None:
            process.kill()
