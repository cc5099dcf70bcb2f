"""--dist=fsdp (timer1.util.fsdp, FSDP2) with 2 Gloo ranks: an SFT step equals one process's step on the
same samples, GRIP (sampling and reference log-probs from the sharded model, ranks decoding different
numbers of steps) equals DDP, its checkpoints are one process's files and a resume is bit-exact."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_sft
from timer1.core.policy import load_policy
from timer1.train.config import SFTConfig, load_config
from timer1.train.resume import weights_digest
from timer1.util.dist import DistInfo

REPO = Path(__file__).resolve().parents[1]
SINGLE = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_master=True)


def torchrun(script, config, out_dir, shared_data, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}            # 2 ranks on 2 cores: no oversubscription
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           script, "--config", config, f"--out_dir={out_dir}", f"--data.data_dir={shared_data}",
                           *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def records(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# One optimizer step over all 4 samples: one process takes them as one micro-batch of 4, each of the two
# FSDP ranks as its own micro-batch of 2 (the loss is the mean over the step's tokens either way).
SFT_STEP = ["--lora.enabled=false", "--data.max_windows=4", "--epochs=1", "--grad_accum=1", "--optim.lr=1e-2",
            "--optim.warmup_steps=0", "--optim.schedule=constant", "--optim.grad_clip=0.5", "--eval_windows=0"]


def test_fsdp_sft_step_equals_one_process_step(shared_data, tmp_path):
    one = load_config(SFTConfig, ["--config", "configs/smoke_sft.toml", f"--data.data_dir={shared_data}",
                                  f"--out_dir={tmp_path / 'one'}", *SFT_STEP, "--batch_size=4"])
    train_sft.main(one, SINGLE)
    done = torchrun("train_sft.py", "configs/smoke_sft.toml", tmp_path / "fsdp", shared_data, *SFT_STEP,
                    "--batch_size=2", "--dist=fsdp")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 steps x 1 micro-batches of 2 x 2 ranks" in done.stdout
    (a,), (b,) = records(tmp_path / "one"), records(tmp_path / "fsdp")
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5) and a["grad_norm"] > 0.5   # clipped
    one_weights = load_file(str(tmp_path / "one" / "step_000001" / "model.safetensors"))
    fsdp_weights = load_file(str(tmp_path / "fsdp" / "step_000001" / "model.safetensors"))
    assert max_difference(one_weights, fsdp_weights) < 1e-5             # gathered whole, averaged as one process
    saved = load_policy(tmp_path / "fsdp" / "step_000001").model          # a plain Hugging Face directory
    assert b["rank_digests"][0] == b["rank_digests"][1] == weights_digest(saved)


GRIP = ["--lora.enabled=false", "--steps=3", "--keep_last=3", "--eval_every=3"]   # full fine-tuning: a frozen reference


def test_fsdp_grip_equals_ddp_and_resumes_bit_exact(shared_data, tmp_path):
    config = "configs/smoke_grip.toml"
    ddp = torchrun("train_grip.py", config, tmp_path / "ddp", shared_data, *GRIP)
    full = torchrun("train_grip.py", config, tmp_path / "full", shared_data, *GRIP, "--dist=fsdp")
    assert ddp.returncode == 0 and full.returncode == 0, (ddp.stderr + full.stderr)[-2000:]
    log_ddp, log_fsdp = records(tmp_path / "ddp"), records(tmp_path / "full")
    assert [r["step"] for r in log_fsdp] == [0, 1, 2, 3]
    assert "val_mse" in log_fsdp[0] and "val_mse" in log_fsdp[-1]       # validation decodes from the shards
    for a, b in zip(log_ddp[1:], log_fsdp[1:]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-8) and b["reward"] == a["reward"]
        assert b["kl"] == pytest.approx(a["kl"], rel=1e-4)
    assert log_fsdp[-1]["kl"] > 0                                       # the policy moved off its reference
    last = "step_000003/model.safetensors"
    weights = load_file(str(tmp_path / "full" / last))
    assert max_difference(load_file(str(tmp_path / "ddp" / last)), weights) < 1e-6
    assert max_difference(load_file(str(tmp_path / "full" / "step_000001/model.safetensors")), weights) > 1e-6

    killed = tmp_path / "killed"                                         # what `full` held after step 1
    killed.mkdir()
    shutil.copytree(tmp_path / "full" / "step_000001", killed / "step_000001")
    (killed / "latest").write_text("step_000001\n")
    (killed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log_fsdp[:2]))
    resumed = torchrun("train_grip.py", config, killed, shared_data, *GRIP, "--dist=fsdp", "--resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert max_difference(load_file(str(killed / last)), weights) == 0.0   # bit-exact
    for a, b in zip(log_fsdp[2:], records(killed)[2:]):
        assert a["loss"] == b["loss"] and a["reward"] == b["reward"]


def test_dist_must_be_ddp_or_fsdp(tmp_path):
    done = subprocess.run([sys.executable, "train_sft.py", "--config", "configs/smoke_sft.toml", "--dist=zero3",
                           f"--out_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dist" in lines[0] and "fsdp" in lines[0], done.stderr
