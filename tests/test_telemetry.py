"""The service's /metrics (timer1.forecast.telemetry): text that parses as Prometheus' exposition format
(a small parser of the format written here), counts and buckets computed by hand, and counters that agree
with the requests a test sent to a running service."""

import http.client
import re
import threading

import pytest

from timer1.core.slow_think import SlowThinkConfig
from timer1.forecast.forecaster import Forecaster
from timer1.forecast.serve import ROUTES, Service
from timer1.forecast.telemetry import CONTENT_TYPE, LATENCY_BUCKETS, ServiceMetrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(rf'({NAME})="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, dict]:
    """Family name -> {"type", "help", "samples": [(name, labels, value)]}, checking the rules of the
    text format version 0.0.4: a final newline, HELP and TYPE before a family's samples, each family
    once, sample names that belong to their declared family, float values, no duplicate series."""
    assert text.endswith("\n")
    families, current, seen = {}, None, set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in families, f"family {name} declared twice"
            families[name] = current = {"help": help_text, "type": None, "samples": []}
            current_name = name
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name == current_name and kind in ("counter", "gauge", "histogram", "summary", "untyped")
            current["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.group(1), dict(LABEL.findall(match.group(2) or "")), float(match.group(3))
            suffixes = ("_bucket", "_sum", "_count") if current["type"] == "histogram" else ("",)
            assert any(name == current_name + s for s in suffixes), f"{name} outside family {current_name}"
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
            current["samples"].append((name, labels, value))
    return families


def check_histogram(family: dict, path: str) -> list[float]:
    """The cumulative bucket counts of one path, checked: non-decreasing, ending at +Inf == _count."""
    buckets = [(s[1]["le"], s[2]) for s in family["samples"] if s[0].endswith("_bucket") and s[1]["path"] == path]
    assert [le for le, _ in buckets] == [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    count = [s[2] for s in family["samples"] if s[0].endswith("_count") and s[1]["path"] == path]
    assert count == [counts[-1]]
    return counts


def test_counts_and_buckets_by_hand():
    metrics = ServiceMetrics(ROUTES, model_load_seconds=1.5)
    for path, status, seconds in [("/forecast", 200, 0.2), ("/forecast", 200, 3.0), ("/forecast", 400, 0.004),
                                  ("/health", 200, 0.001), ("/wp-admin", 404, 0.002), ("/forecast", 200, 99.0)]:
        metrics.observe(path, status, seconds)
    families = parse_exposition(metrics.render(queue_depth=2))
    requests = {(s[1]["path"], s[1]["status"]): s[2] for s in families["timer1_requests_total"]["samples"]}
    assert requests == {("/forecast", "200"): 3, ("/forecast", "400"): 1, ("/health", "200"): 1, ("other", "404"): 1}
    assert families["timer1_requests_total"]["type"] == "counter"
    latency = families["timer1_request_duration_seconds"]
    # /forecast took 0.004 (<= 0.01), 0.2 (<= 0.25), 3.0 (<= 5) and 99 (over the top bucket)
    by_bound = dict(zip([f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"], check_histogram(latency, "/forecast")))
    assert (by_bound["0.01"], by_bound["0.1"], by_bound["0.25"], by_bound["2.5"], by_bound["5"], by_bound["60"],
            by_bound["+Inf"]) == (1, 1, 2, 2, 3, 3, 4)
    total = [s[2] for s in latency["samples"] if s[0].endswith("_sum") and s[1]["path"] == "/forecast"]
    assert total == [pytest.approx(0.004 + 0.2 + 3.0 + 99.0)]
    assert families["timer1_queue_depth"]["samples"] == [("timer1_queue_depth", {}, 2.0)]
    assert families["timer1_model_load_seconds"]["samples"][0][2] == 1.5


def test_the_parser_refuses_what_the_format_forbids():
    with pytest.raises(AssertionError):
        parse_exposition("# HELP a x\n# TYPE a counter\nb 1\n")          # a sample outside its family
    with pytest.raises(AssertionError):
        parse_exposition("# HELP a x\n# TYPE a counter\na 1")            # no final newline
    with pytest.raises(AssertionError):
        parse_exposition('# HELP a x\n# TYPE a counter\na{p="1"} 1\na{p="1"} 2\n')   # the same series twice


def get(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, response.headers["Content-Type"], text


def test_a_running_service_counts_the_requests_it_was_sent():
    forecaster = Forecaster.from_pretrained("timer1-tiny", config=SlowThinkConfig(samples=2, rounds=1))
    service = Service(("127.0.0.1", 0), forecaster, load_seconds=0.75)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    port = service.server_address[1]
    try:
        good = b'{"series": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "horizon": 3, "mode": "single"}'
        assert [get(port, "POST", "/forecast", good)[0] for _ in range(2)] == [200, 200]
        assert get(port, "POST", "/forecast", b'{"series": []}')[0] == 400
        assert get(port, "GET", "/health")[0] == 200
        assert get(port, "GET", "/nope")[0] == 404
        assert get(port, "GET", "/forecast")[0] == 405
        status, content_type, text = get(port, "GET", "/metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        families = parse_exposition(text)
        requests = {(s[1]["path"], s[1]["status"]): s[2] for s in families["timer1_requests_total"]["samples"]}
        assert requests == {("/forecast", "200"): 2, ("/forecast", "400"): 1, ("/forecast", "405"): 1,
                            ("/health", "200"): 1, ("other", "404"): 1}   # this /metrics is counted after it answers
        assert check_histogram(families["timer1_request_duration_seconds"], "/forecast")[-1] == 4
        assert families["timer1_queue_depth"]["samples"][0][2] == 0
        assert families["timer1_model_load_seconds"]["samples"][0][2] == 0.75
        again = parse_exposition(get(port, "GET", "/metrics")[2])["timer1_requests_total"]["samples"]
        assert ("timer1_requests_total", {"path": "/metrics", "status": "200"}, 1.0) in again
    finally:
        service.shutdown()
        service.close()
