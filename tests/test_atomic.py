"""timer1.atomic: a failed write leaves the old file and no temporary behind."""

import json

import numpy as np
import pytest

from timer1.atomic import write_json_atomic, write_text_atomic


def test_write_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    write_json_atomic(target, {"mse": np.float32(1.5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(target.read_text()) == {"mse": 1.5, "n": 3, "v": [0, 1]}
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text())["n"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
