"""train_sft.py: completion-only loss mask, the data plan, overfitting, exact resume, torchrun with
2 Gloo ranks, one-line errors."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import train_sft as T
from timer1.core.codec import completion_ids
from timer1.core.policy import load_policy
from timer1.core.tokenizer import train_tokenizer
from timer1.train.checkpoint import latest_checkpoint
from timer1.train.config import SFTConfig, load_config
from timer1.train.resume import weights_digest
from timer1.util.dist import DistInfo

REPO = Path(__file__).resolve().parents[1]
SINGLE = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_master=True)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}   # busy shared CPU: avoid thread-pool spin-waits


def cfg_for(shared_data, out_dir, *overrides):
    return load_config(SFTConfig, ["--config", "configs/smoke_sft.toml", f"--data.data_dir={shared_data}",
                                   f"--out_dir={out_dir}", "--eval_windows=1", "--val_max_tokens=6", *overrides])


def full_log(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def read_log(out_dir):
    """The records of optimizer steps (the step-0 record scores the model before training)."""
    return [r for r in full_log(out_dir) if r["step"] > 0]


# ---------------------------------------------------------------------------------------- pieces

def test_loss_mask_covers_exactly_the_completion_and_eos():
    tokenizer = train_tokenizer(["<think>up</think><answer>1,2,3</answer> series of values"] * 20, vocab_size=300)
    records = [{"prompt": [{"role": "user", "content": "series 1,2"}], "completion": "<think>up</think><answer>3</answer>"},
               {"prompt": "a longer series 1,2,3,4,5,6", "completion": "<answer>7,8</answer>"}]
    examples = [T.encode(r, tokenizer) for r in records]
    ids, mask = T.collate(examples, pad_id=0, device="cpu")
    assert ids.shape[1] == max(len(e.ids) for e in examples) and mask.shape == (2, ids.shape[1] - 1)
    for b, (e, r) in enumerate(zip(examples, records)):
        target_positions = torch.nonzero(mask[b]).squeeze(1) + 1     # mask column t scores token t + 1
        assert ids[b, target_positions].tolist() == completion_ids(tokenizer, r["completion"])
        assert ids[b, target_positions[-1]].item() == tokenizer.eos_ids[0]
        assert (ids[b, len(e.ids):] == 0).all()                       # right padding only
    # with a prompt weight every predicted prompt token (all but the first) weighs that much
    _, weighted = T.collate(examples, pad_id=0, device="cpu", prompt_loss=0.25)
    for b, e in enumerate(examples):
        assert (weighted[b, :e.n_prompt - 1] == 0.25).all() and torch.equal(weighted[b, e.n_prompt - 1:], mask[b, e.n_prompt - 1:])


def test_plan_deals_every_sample_once_per_epoch_with_equal_counts():
    cfg = SFTConfig(epochs=2, batch_size=3, seed=7)
    lengths = list(np.random.default_rng(0).integers(10, 100, size=23))
    plan = T.plan_run(lengths, cfg, world=3)
    assert len({len(p) for p in plan}) == 1                           # equal micro-batch counts on every rank
    per_epoch = len(plan[0]) // 2
    for epoch in range(2):
        real = [j for p in plan for batch, is_real in p[epoch * per_epoch:(epoch + 1) * per_epoch] if is_real
                for j in batch]
        assert sorted(real) == list(range(23))                         # each sample once per epoch
    assert plan == T.plan_run(lengths, cfg, world=3)                    # seeded: a resume sees the same order
    assert plan[0][:per_epoch] != plan[0][per_epoch:]                  # a new permutation each epoch
    examples = [T.Example(ids=[0] * n, n_prompt=n // 3) for n in lengths]
    mine, completion, total = T.step_batches(plan, 1, 2, examples, rank=2)
    assert mine == plan[2][2:4]                                         # step 1 = micro-batches 2 and 3
    real = [j for r in range(3) for batch, ok in plan[r][2:4] if ok for j in batch]
    assert total == sum(lengths[j] for j in real)                       # every rank's tokens, counted locally
    assert completion == sum(lengths[j] - lengths[j] // 3 for j in real)
    _, weight, _ = T.step_batches(plan, 1, 2, examples, rank=2, prompt_loss=0.5)
    assert weight == completion + 0.5 * sum(lengths[j] // 3 - 1 for j in real)


# ---------------------------------------------------------------------------------------- training

def test_loss_falls_when_overfitting_four_samples(shared_data, tmp_path):
    cfg = cfg_for(shared_data, tmp_path, "--lora.enabled=false", "--data.max_windows=4", "--epochs=30",
                  "--batch_size=4", "--grad_accum=1", "--optim.lr=1e-2", "--optim.warmup_steps=0",
                  "--optim.schedule=constant", "--eval_every=0", "--save_every=0")
    T.main(cfg, SINGLE)
    losses = [r["loss"] for r in read_log(tmp_path)]
    assert len(losses) == 30
    assert losses[-1] < 0.35 * losses[0], losses                      # from ~ln(vocab) towards memorised
    assert (tmp_path / "step_000030" / "model.safetensors").is_file()
    assert load_policy(tmp_path / "step_000030").prompt_format.style == "compact"


def test_step_0_scores_the_model_before_training_and_a_schedule_inside_warm_up_warns(shared_data, tmp_path):
    """With lr 0 the weights never move, so the step-0 validation (logged first, before any step) must
    equal the last step's: both score the same model the same way. The run's 2 steps all fall in its
    10-step warm-up: a warning says so."""
    cfg = cfg_for(shared_data, tmp_path, "--lora.enabled=false", "--data.max_windows=4", "--epochs=1",
                  "--batch_size=2", "--grad_accum=1", "--optim.lr=0", "--optim.warmup_steps=10", "--eval_windows=2",
                  "--save_every=0")
    with pytest.warns(UserWarning, match="^too little data: 4 samples make 2 optimizer steps, all inside the "
                                         "10-step learning-rate warm-up"):
        T.main(cfg, SINGLE)
    log = full_log(tmp_path)
    assert [r["step"] for r in log] == [0, 1, 2]
    assert set(log[0]) >= {"val_loss", "val_mse", "val_mase"} and "loss" not in log[0]
    for key in ("val_loss", "val_mse", "val_mase"):
        assert log[0][key] == log[-1][key], key
    quiet = cfg_for(shared_data, tmp_path / "q", "--lora.enabled=false", "--data.max_windows=4", "--epochs=1",
                    "--batch_size=2", "--grad_accum=1", "--optim.warmup_steps=1", "--eval_windows=0", "--save_every=0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # 2 steps after 1 warm-up step: no warning
        T.main(quiet, SINGLE)
    assert [r["step"] for r in full_log(tmp_path / "q")] == [1, 2]      # nothing to validate: no step 0


def test_resumed_run_matches_uninterrupted_run(shared_data, tmp_path):
    args = ["--data.max_windows=4", "--epochs=2", "--batch_size=2", "--grad_accum=1", "--lora.dropout=0.2",
            "--save_every=1", "--keep_last=10", "--eval_every=2"]      # dropout: the RNG states must be restored
    T.main(cfg_for(shared_data, tmp_path / "a", *args), SINGLE)
    T.main(cfg_for(shared_data, tmp_path / "b", *args), SINGLE)
    for step in (3, 4):                                                 # crash after step 2
        shutil.rmtree(tmp_path / "b" / f"step_{step:06d}")
    (tmp_path / "b" / "latest").write_text("step_000002\n")
    torch.manual_seed(123)                                              # the process RNG is not the run's
    T.main(cfg_for(shared_data, tmp_path / "b", *args, "--resume=true"), SINGLE)
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in full_log(tmp_path / "b")] == [0, 1, 2, 3, 4]   # a resume does not score step 0 again
    assert [r["loss"] for r in log_b] == pytest.approx([r["loss"] for r in log_a], rel=1e-6, abs=1e-7)
    assert log_b[-1]["val_loss"] == pytest.approx(log_a[-1]["val_loss"], rel=1e-6)
    assert log_a[-1]["rank_digests"] == log_b[-1]["rank_digests"]      # identical final weights
    assert log_a[0]["loss"] != log_a[1]["loss"]
    base = tmp_path / "a" / "base_model"                               # LoRA checkpoints load on their base
    loaded = load_policy(base, adapter=latest_checkpoint(tmp_path / "a"))
    assert weights_digest(loaded.model) == log_a[-1]["rank_digests"][0]


def test_torchrun_two_gloo_ranks_end_with_identical_weights(shared_data, tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train_sft.py", "--config", "configs/smoke_sft.toml", f"--data.data_dir={shared_data}",
                           f"--out_dir={tmp_path}", "--eval_windows=2", "--val_max_tokens=6",
                           "--optim.warmup_steps=4"],
                          cwd=REPO, capture_output=True, text=True, timeout=240, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-2000:]
    # Python's "file:line: UserWarning" and source line become one line, said by rank 0 alone
    warned = [line for line in done.stderr.splitlines() if "too little data" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: too little data: 16 samples make 2 optimizer steps")
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr
    # 16 samples, 2 ranks x 2 accumulated micro-batches of 2: 2 steps, DDP sync on the 2nd micro-batch only
    assert "2 steps x 2 micro-batches of 2 x 2 ranks" in done.stdout
    assert done.stdout.count("step 2/2") == 1                             # rank 0 prints alone
    last = read_log(tmp_path)[-1]
    assert last["step"] == 2 and last["val_n"] == 2                     # the two eval windows split over ranks
    digests = last["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    loaded = load_policy(tmp_path / "base_model", adapter=tmp_path / "step_000002")
    assert weights_digest(loaded.model) == digests[0]
    rng = torch.load(tmp_path / "step_000002" / "train_state.pt", weights_only=True)["rng"]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each rank draws its own dropout masks


# ---------------------------------------------------------------------------------------- errors

def run_sft(*args):
    return subprocess.run([sys.executable, "train_sft.py", "--config", "configs/smoke_sft.toml", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=ONE_THREAD)


def one_line_error(done, *fragments):
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_errors_are_one_line_with_nonzero_exit(shared_data, tmp_path):
    one_line_error(run_sft("--bogus=1"), "unknown config key 'bogus'")
    one_line_error(run_sft(f"--out_dir={tmp_path / 'm'}", "--model.random_init=false",
                           f"--model.path={tmp_path / 'no_model'}"), "not found", "no_model")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"prompt": "only a prompt"}\nnot json\n')
    one_line_error(run_sft(f"--data.data_dir={shared_data}", f"--out_dir={tmp_path / 'j'}",
                           f"--data.sft_jsonl={junk}"), "no valid SFT samples", "junk.jsonl")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "short.csv").write_text("date,OT\n" + "".join(f"2020-01-01 {h:02d}:00:00,{h}\n" for h in range(10)))
    one_line_error(run_sft(f"--data.data_dir={tmp_path / 'data'}", "--data.datasets=short", "--data.channels=",
                           f"--out_dir={tmp_path / 's'}"), "no usable train windows")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    one_line_error(run_sft(f"--data.data_dir={shared_data}", f"--out_dir={blocker / 'run'}"), "not writable")
