"""timer1.util.atomic: a failed write leaves the old file and no temporary behind; only regular files are replaced
(character devices are written through)."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from timer1.util.atomic import check_writable, write_json_atomic, write_text_atomic


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


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_special_files_are_never_replaced(tmp_path, kind):
    target = tmp_path / "out.csv"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = os.lstat(target).st_mode
    for write in (lambda: write_text_atomic(target, "x"), lambda: check_writable(target)):
        with pytest.raises(ValueError, match=f"^{target} is a .*, not a regular file; refusing to replace it$"):
            write()
    assert os.lstat(target).st_mode == before and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_character_device_is_written_through_not_replaced(tmp_path):
    """/dev/null (directly or through a symlink) takes the text and stays a device; /dev/full's
    "no space" is an OSError naming it, as any failed write."""
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/null")
    for path in (Path("/dev/null"), link):
        assert check_writable(path) == Path("/dev/null")
        assert write_text_atomic(path, "x,y\n", newline="") == path
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(OSError, match="No space left on device"):
        write_text_atomic("/dev/full", "x")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_check_writable_probes_and_names_the_users_path(tmp_path):
    target = check_writable(tmp_path / "new.csv")
    assert target == tmp_path / "new.csv" and list(tmp_path.iterdir()) == []  # the probe is gone
    with pytest.raises(ValueError, match=f"^cannot write {tmp_path}/no/such.csv: directory {tmp_path}/no does not exist$"):
        check_writable(tmp_path / "no" / "such.csv")
    with pytest.raises(ValueError, match="^cannot write /proc/timer1-out.csv: "):  # even root cannot make files here
        check_writable("/proc/timer1-out.csv")
