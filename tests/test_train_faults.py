"""Training faults (issue 16): a killed launcher takes its workers along, Ctrl-C ends with one line,
resume skips unreadable checkpoints and stops on a finished run, a broken model.path / adapter /
channel name is one line, stale temporaries of a killed run are cleaned at the next start."""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from timer1.data.window_sets import WindowSpec, load_windows
from timer1.train.checkpoint import clean_stale_temps, latest_checkpoint, list_checkpoints
from timer1.train.run_dir import claim_out_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # as conftest.py's shared_data
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 ranks on 2 cores: no thread oversubscription
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# many steps and a checkpoint after each, so a run is still training and saving when it is stopped
LONG = {"train_sft.py": ["--config", "configs/smoke_sft.toml", "--epochs=200", "--save_every=1", "--eval_every=0"],
        "train_grip.py": ["--config", "configs/smoke_grip.toml", "--steps=500", "--save_every=1", "--eval_every=0"]}


def start(command, out_dir, tmp_path):
    """A training command in the background, its output in files (a pipe nobody reads could block it)."""
    out, err = open(tmp_path / "stdout", "w"), open(tmp_path / "stderr", "w")
    return subprocess.Popen([*command, f"--out_dir={out_dir}", f"--data.data_dir={SHARED_DATA}"],
                            cwd=REPO, env=ENV, stdout=out, stderr=err)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def alive(pid):
    """True while `pid` runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def run_state(out_dir):
    """Everything a still-running trainer would change: file names, the latest pointer, the log's size."""
    return (sorted(p.name for p in out_dir.iterdir()), (out_dir / "latest").read_text(),
            (out_dir / "metrics.jsonl").stat().st_size)


# ---------------------------------------------------------------------------------------- signals

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
@pytest.mark.parametrize("script", ["train_sft.py", "train_grip.py"])
def test_killing_the_launcher_stops_its_workers(tmp_path, script):
    out_dir = tmp_path / "run"
    launcher = start([*TORCHRUN, script, *LONG[script]], out_dir, tmp_path)
    workers = []
    try:
        wait_for(lambda: (out_dir / "latest").is_file() or launcher.poll() is not None, 180, "a first checkpoint")
        assert launcher.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
        workers += children(launcher.pid)
        assert len(workers) == 2
        launcher.kill()                                            # SIGKILL: the launcher cannot forward anything
        launcher.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), 5, "the workers to stop")
        before = run_state(out_dir)
        time.sleep(3)
        assert run_state(out_dir) == before                        # nobody writes checkpoints any more
    finally:                                                       # never leave a trainer behind
        for pid in [launcher.pid, *workers, *children(launcher.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def interrupt(command, tmp_path):
    """Start `command`, Ctrl-C it (SIGINT) once it has saved a checkpoint; returns (exit code, stderr)."""
    out_dir = tmp_path / "run"
    process = start(command, out_dir, tmp_path)
    try:
        wait_for(lambda: (out_dir / "latest").is_file() or process.poll() is not None, 180, "a first checkpoint")
        assert process.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return code, (tmp_path / "stderr").read_text()


@pytest.mark.parametrize("script", ["train_sft.py", "train_grip.py"])
def test_ctrl_c_of_one_process_is_one_line(tmp_path, script):
    code, stderr = interrupt([sys.executable, script, *LONG[script]], tmp_path)
    assert code == 130
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: interrupted; --resume=true continues from ") and "step_" in lines[0]
    assert latest_checkpoint(tmp_path / "run").name in lines[0]


def test_ctrl_c_of_torchrun_is_one_line_from_the_workers(tmp_path):
    code, stderr = interrupt([*TORCHRUN, "train_grip.py", *LONG["train_grip.py"]], tmp_path)
    assert code != 0
    # torchrun itself logs the signal it forwards and raises its own SignalException; the workers add one line
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: interrupted; --resume=true continues from "), stderr
    for sign in ("[rank0]", "[rank1]", "KeyboardInterrupt", "Fatal Python error", "Connection closed"):
        assert sign not in stderr, stderr


# ---------------------------------------------------------------------------------------- resume

def run(script, *args):
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def finished_sft(tmp_path_factory):
    """A finished smoke SFT run keeping both its checkpoints (steps 2 and 4)."""
    out_dir = tmp_path_factory.mktemp("sft") / "run"
    done = run("train_sft.py", "--config", "configs/smoke_sft.toml", f"--data.data_dir={SHARED_DATA}",
               f"--out_dir={out_dir}", "--keep_last=2", "--eval_windows=1", "--val_max_tokens=6")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for _, p in list_checkpoints(out_dir)] == ["step_000002", "step_000004"]
    return out_dir


def resume_sft(out_dir):
    return run("train_sft.py", "--config", "configs/smoke_sft.toml", f"--data.data_dir={SHARED_DATA}",
               f"--out_dir={out_dir}", "--keep_last=2", "--eval_windows=1", "--val_max_tokens=6", "--resume=true")


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize("broken", ["train_state.pt", "adapter_model.safetensors"])
def test_resume_skips_an_unreadable_latest_checkpoint(finished_sft, tmp_path, broken):
    out_dir = tmp_path / "run"
    shutil.copytree(finished_sft, out_dir)
    truncate(out_dir / "step_000004" / broken)
    done = resume_sft(out_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    warning = done.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: skipped checkpoint step_000004"), done.stderr
    assert broken in warning[0] and "resuming from step_000002" in warning[0]
    # steps 3 and 4 were trained again from step 2: the same adapter as the uninterrupted run's
    redone = load_file(str(out_dir / "step_000004" / "adapter_model.safetensors"))
    original = load_file(str(finished_sft / "step_000004" / "adapter_model.safetensors"))
    assert redone.keys() == original.keys() and all(torch.equal(redone[k], original[k]) for k in original)


def test_resume_with_no_readable_checkpoint_is_one_line(finished_sft, tmp_path):
    out_dir = tmp_path / "run"
    shutil.copytree(finished_sft, out_dir)
    truncate(out_dir / "step_000004" / "train_state.pt")
    truncate(out_dir / "step_000002" / "adapter_model.safetensors")
    done = resume_sft(out_dir)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume=true but no checkpoint in"), done.stderr
    assert "step_000004, unreadable" in lines[0] and "step_000002, unreadable" in lines[0]


def test_resume_of_a_finished_run_says_so_and_cleans_stale_temps(finished_sft, tmp_path):
    out_dir = tmp_path / "run"
    shutil.copytree(finished_sft, out_dir)
    (out_dir / ".best.json.k2j4h1.tmp").write_bytes(b"")            # what a kill inside write_text_atomic leaves
    (out_dir / ".tmp-step_000006").mkdir()                          # ... inside save_checkpoint
    (out_dir / "base_model" / ".tokenizer.json.x1.tmp").write_text("{")
    saved = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("step_*/*")}
    done = resume_sft(out_dir)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert f"{out_dir} is finished already: 4/4 steps" in done.stdout
    assert "removed 3 temporary file(s)" in done.stdout
    assert not list(out_dir.glob(".*tmp*")) and not list((out_dir / "base_model").glob(".*tmp*"))
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.glob("step_*/*")} == saved   # nothing re-trained


def test_resume_of_a_finished_grip_run_says_so(tmp_path):
    args = ["--config", "configs/smoke_grip.toml", f"--data.data_dir={SHARED_DATA}", f"--out_dir={tmp_path}",
            "--steps=1", "--eval_windows=1"]
    assert run("train_grip.py", *args).returncode == 0
    done = run("train_grip.py", *args, "--resume=true")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path} is finished already: 1/1 steps" in done.stdout and "step 1/1" not in done.stdout


# ---------------------------------------------------------------------------------------- bad input

def one_line_error(done, *fragments):
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_truncated_model_path_or_adapter_is_one_line(compact_checkpoint, finished_sft, tmp_path):
    broken_model = tmp_path / "model"
    shutil.copytree(compact_checkpoint, broken_model)
    truncate(broken_model / "model.safetensors")
    one_line_error(run("train_sft.py", "--config", "configs/smoke_sft.toml", f"--out_dir={tmp_path / 'a'}",
                       "--model.random_init=false", f"--model.path={broken_model}"),
                   f"cannot load model.path {broken_model}", "SafetensorError")
    broken_adapter = tmp_path / "adapter"
    shutil.copytree(finished_sft / "step_000004", broken_adapter)
    truncate(broken_adapter / "adapter_model.safetensors")
    one_line_error(run("train_grip.py", "--config", "configs/smoke_grip.toml", f"--out_dir={tmp_path / 'b'}",
                       f"--data.data_dir={SHARED_DATA}", f"--sft_adapter={broken_adapter}"),
                   f"cannot load adapter {broken_adapter}", "SafetensorError")


def test_a_channel_no_dataset_has_is_an_error(tmp_path):
    one_line_error(run("train_sft.py", "--config", "configs/smoke_sft.toml", f"--out_dir={tmp_path}",
                       f"--data.data_dir={SHARED_DATA}", "--data.channels=OT,NOPE"), "no dataset has channel 'NOPE'")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_channels_still_select_per_dataset():
    """A channel some dataset lacks is fine: that dataset keeps all its channels, as before."""
    spec = WindowSpec(str(SHARED_DATA), ("ETTh1", "nasdaq"), lookback=24, horizon=8, stride=2000, channels=("OT",))
    pairs = {(w.dataset, w.channel) for w in load_windows(spec, "train")}
    assert pairs == {("ETTh1", "OT")} | {("nasdaq", c) for c in ("Close", "High", "Low", "Open", "Volume")}
    with pytest.raises(ValueError, match="no dataset has channel 'Close '"):
        load_windows(WindowSpec(str(SHARED_DATA), ("ETTh1",), 24, 8, 2000, channels=("Close ",)), "val")


# ---------------------------------------------------------------------------------------- the run directory

def test_clean_stale_temps_removes_ours_and_restores_an_only_copy(tmp_path):
    keep = ["latest", "best.json", "metrics.jsonl", "config.toml", ".hidden_by_user"]
    for name in keep + [".best.json.abc.tmp", ".latest.q.tmp", ".write-test-x"]:
        (tmp_path / name).write_text("x")
    for name in ("step_000003", ".tmp-step_000004", ".old-step_000002", ".old-step_000003", ".base_model.tmp-r"):
        (tmp_path / name).mkdir()
    (tmp_path / ".old-step_000002" / "train_state.pt").write_text("the only copy of step 2")
    cleaned = clean_stale_temps(tmp_path)
    assert sorted(cleaned) == sorted([".best.json.abc.tmp", ".latest.q.tmp", ".write-test-x", ".tmp-step_000004",
                                      ".old-step_000002", ".old-step_000003", ".base_model.tmp-r"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["step_000002", "step_000003"])
    assert (tmp_path / "step_000002" / "train_state.pt").read_text() == "the only copy of step 2"


def test_a_run_directory_in_use_is_refused(tmp_path):
    """A second trainer (or a worker whose launcher died before this fix) must not write into a live run."""
    claim_out_dir(tmp_path / "free", resume=False)
    with open(tmp_path / ".run.lock", "a") as held:        # another process's lock: another open file
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="in use by another training process"):
            claim_out_dir(tmp_path, resume=True)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    """Ctrl-C (or a preemption) before the first checkpoint leaves config.toml and a few metrics lines:
    a fresh start is refused (the directory holds a run), and --resume=true starts it from step 0,
    its stale metrics dropped, instead of failing for want of a checkpoint (issue 38, item 5)."""
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "config.toml").write_text("# left by the stopped run\n")
    (out_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 999.0}\n')
    refused = run("train_sft.py", "--config", "configs/smoke_sft.toml", f"--data.data_dir={SHARED_DATA}",
                  f"--out_dir={out_dir}", "--eval_windows=1", "--val_max_tokens=6")
    assert refused.returncode != 0 and "already holds a run: add --resume=true" in refused.stderr
    done = resume_sft(out_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "holds no checkpoint yet" in done.stdout and "starting from step 0" in done.stdout
    assert latest_checkpoint(out_dir).name == "step_000004"
    assert "999.0" not in (out_dir / "metrics.jsonl").read_text()
