"""GRIP training: a learning test on the real sampler/reward/loss path, the torchrun smoke run with
identical weights on both ranks and an exact resume, and the CLI's one-line errors."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train_grip
from timer1.core.codec import prompt_format_from
from timer1.core.grip import grip_loss, loss_totals, make_groups
from timer1.core.lora import apply_lora, lora_modules, save_adapter
from timer1.core.policy import save_policy
from timer1.core.reference import Reference
from timer1.core.rollout import build_batch, completion_logprobs, sample_rollout, score_rollout
from timer1.train.config import GRIPConfig, load_config
from timer1.train.random_init import random_policy
from timer1.train.setup import policy_from_config
from timer1.util import dist

REPO = Path(__file__).resolve().parents[1]


def test_a_few_grip_steps_raise_the_reward():
    """Toy task with a checkable reward: the paper's reward plus the share of digits in the answer.
    A tiny random policy cannot write the <think>/<answer> format, so compute_reward gives every
    sample format -1; the digit term varies between samples and is learnable. Ten GRIP steps
    (cluster selection, softmax weights, mu=2, KL to a frozen copy) must raise the mean reward on
    a fixed evaluation sample clearly (measured ~0.03 -> ~0.18 digit share)."""
    torch.manual_seed(0)
    policy = random_policy({"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 4, "num_key_value_heads": 2}, seed=0)
    model, tokenizer = policy.model, policy.tokenizer
    model.requires_grad_(True)  # full fine-tuning: the reference is a frozen copy
    reference = Reference("model", model=copy.deepcopy(model).requires_grad_(False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    prompts = [tokenizer.encode("Series: 1,2,3. Continue:"), tokenizer.encode("Values 4,5,6 next:")]
    targets = [np.arange(8.0)] * 2

    def mean_reward():
        rollout = sample_rollout(model, tokenizer, prompts, K=32, max_new_tokens=12, seed=1234)
        rewards, terms = score_rollout(rollout, targets, digit_bonus=1.0)
        return rewards.mean().item(), terms["digits"].mean()

    before, digits_before = mean_reward()
    for step in range(10):
        rollout = sample_rollout(model, tokenizer, prompts, K=16, max_new_tokens=12, seed=step)
        rewards, terms = score_rollout(rollout, targets, digit_bonus=1.0)
        assert (terms["format"] == -1).all()  # the real reward path ran: no format yet
        groups = make_groups(rewards, 8, generator=torch.Generator().manual_seed(step))  # k = 2
        micro_batches = build_batch(rollout, groups, 0).micro_batches(8)
        totals = loss_totals(torch.cat([mb.weights for mb in micro_batches]),
                             torch.ones(sum(mb.num_tokens for mb in micro_batches)))
        with torch.no_grad(), reference.active(model) as ref_model:
            ref = [completion_logprobs(ref_model, mb) for mb in micro_batches]
        old = [None] * len(micro_batches)
        for inner in range(2):  # mu = 2 inner updates on the same rollout
            optimizer.zero_grad()
            for i, mb in enumerate(micro_batches):
                logp = completion_logprobs(model, mb)
                old[i] = logp.detach() if inner == 0 else old[i]
                loss, _ = grip_loss(logp, old[i], ref[i], mb.advantages, mb.weights, mb.completion_mask,
                                    totals=totals)
                loss.backward()
            optimizer.step()
    after, digits_after = mean_reward()
    assert digits_after > 2.5 * digits_before and digits_after > digits_before + 0.05, (digits_before, digits_after)
    assert after > before + 0.05, (before, after)


def run(args, env_extra=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}  # 2 ranks on 2 cores: no oversubscription
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def torchrun(out_dir, shared_data, *extra):
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "train_grip.py", "--config", "configs/smoke_grip.toml", f"--out_dir={out_dir}",
                f"--data.data_dir={shared_data}", *extra])


def full_log(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def records(out_dir):
    """The records of optimizer steps (the step-0 record scores the policy before training)."""
    return [r for r in full_log(out_dir) if r["step"] > 0]


def test_torchrun_two_ranks_identical_weights_and_exact_resume(tmp_path, shared_data):
    full = tmp_path / "full"
    result = torchrun(full, shared_data, "--steps=3", "--keep_last=3", "--eval_every=0")
    assert result.returncode == 0, result.stderr[-2000:]
    log = records(full)
    assert [r["step"] for r in log] == [1, 2, 3]
    digests = log[-1]["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # DDP kept both ranks' weights identical
    assert log[-1]["kl"] > 0 and any(r["loss"] != 0 for r in log)  # the weights did move
    assert all(k in log[0] for k in ("reward_format", "reward_mse", "format_rate", "answer_tokens", "clip_frac",
                                     "tokens_per_s", "gen_s", "update_s"))
    assert "val_mse" in log[-1]
    before = full_log(full)[0]           # the starting policy, scored as the last step is
    assert before["step"] == 0 and before["val_n"] == log[-1]["val_n"] and "loss" not in before
    assert "step 0 (before training) | val_mse" in result.stdout
    rng = torch.load(full / "step_000003" / "train_state.pt", weights_only=True)["rng"]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each rank its own random stream
    adapter = load_file(str(full / "step_000003" / "adapter_model.safetensors"))
    start = load_file(str(full / "step_000001" / "adapter_model.safetensors"))
    assert any(not torch.equal(adapter[k], start[k]) for k in adapter)

    # a run killed right after its first checkpoint: its directory is what `full` held then
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("base_model", "step_000001"):
        shutil.copytree(full / name, killed / name)
    (killed / "latest").write_text("step_000001\n")
    (killed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [before, *log[:2]]))  # step 2: not saved
    result = torchrun(killed, shared_data, "--steps=3", "--keep_last=3", "--eval_every=0", "--resume=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout
    resumed = load_file(str(killed / "step_000003" / "adapter_model.safetensors"))
    assert all(torch.equal(resumed[k], adapter[k]) for k in adapter)  # bit-identical to the uninterrupted run
    log_resumed = records(killed)
    assert [r["step"] for r in full_log(killed)] == [0, 1, 2, 3]
    for a, b in zip(log, log_resumed):
        assert a["loss"] == b["loss"] and a["reward"] == b["reward"]


def test_cli_errors_are_one_line(tmp_path, shared_data):
    missing = run([sys.executable, "train_grip.py", "--config", "configs/smoke_grip.toml",
                   "--model.random_init=false", f"--model.path={tmp_path / 'no_such_model'}",
                   f"--out_dir={tmp_path / 'out'}", f"--data.data_dir={shared_data}"])
    assert missing.returncode != 0
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_model" in lines[0] and "Traceback" not in missing.stderr, missing.stderr

    unknown = run([sys.executable, "train_grip.py", "--config", "configs/smoke_grip.toml", "--no_such_key=1"])
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown config key 'no_such_key'"


def sft_adapter_dirs(tmp_path, dropout=0.0):
    """A base model on disk and an SFT-like adapter for it that changed the model a lot."""
    cfg = load_config(GRIPConfig, ["--config", "configs/smoke_grip.toml"])
    policy = policy_from_config(cfg.model, prompt_format_from(cfg.data), seed=0)
    save_policy(policy, tmp_path / "base")
    apply_lora(policy.model, ("q_proj", "v_proj"), r=4, alpha=8, dropout=dropout)
    with torch.no_grad():
        for m in lora_modules(policy.model).values():
            m.lora_B.weight.normal_(0, 0.5)
    save_adapter(policy.model, tmp_path / "sft")
    return tmp_path / "base", tmp_path / "sft"


def run_in_process(out_dir, *overrides):
    cfg = load_config(GRIPConfig, ["--config", "configs/smoke_grip.toml", f"--out_dir={out_dir}", *overrides])
    with dist.distributed() as info:
        train_grip.main(cfg, info)
    return records(out_dir)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_old_reference_and_update_logprobs_agree_bit_for_bit(tmp_path, shared_data, bf16, checkpointing):
    """An SFT adapter trained with LoRA dropout 0.05, two inner updates at lr 0 (the weights never move):
    the ratio must be exactly 1 and the KL to the reference (that same adapter) exactly 0 at both inner
    steps, so old, reference and update log-probs come from one path with dropout off, under bf16
    autocast and with gradient checkpointing alike. (Dropout in the update, or a second log-prob
    path under checkpointing or autocast, each measured ratios of 0.45-1.8 and 0.85-1.09.)"""
    base, sft = sft_adapter_dirs(tmp_path, dropout=0.05)
    log = run_in_process(tmp_path / "run", "--model.random_init=false", f"--model.path={base}",
                         f"--model.dtype={'bfloat16' if bf16 else 'float32'}",
                         f"--sft_adapter={sft}", "--mu=2", "--optim.lr=0", "--steps=2", "--eval_every=0",
                         f"--model.gradient_checkpointing={str(checkpointing).lower()}",
                         f"--data.data_dir={shared_data}")
    for record in log:
        assert record["first_ratio"] == 1.0 and record["ratio"] == 1.0, record
        assert record["clip_frac"] == 0.0 and record["first_kl"] == 0.0 and record["kl"] == 0.0, record
        assert record["trained_rows"] > 0


def test_a_fresh_run_refuses_a_used_out_dir(tmp_path, shared_data):
    common = ["--steps=1", "--eval_every=0", f"--data.data_dir={shared_data}"]
    run_in_process(tmp_path / "run", *common)
    with pytest.raises(ValueError, match="already holds a run.*--resume=true"):
        run_in_process(tmp_path / "run", *common)
    assert [r["step"] for r in records(tmp_path / "run")] == [1]  # the first run's log is untouched


def test_dapo_options_run_and_log_their_counts(tmp_path, shared_data):
    log = run_in_process(tmp_path / "run", "--steps=2", "--eval_every=0", "--eps_high=0.28",
                         "--loss_agg=batch-token-mean", "--drop_zero_variance=true", "--overlong=drop",
                         "--adv_scale=batch-std", "--ratio_level=sequence", f"--data.data_dir={shared_data}")
    for record in log:
        for key in ("entropy", "zero_variance_frac", "truncated_frac", "clip_frac_low", "clip_frac_high", "kl"):
            assert key in record and np.isfinite(record[key]), key
        # the smoke model never stops before max_completion: every completion is cut, so all are dropped
        assert record["truncated_frac"] == 1.0 and record["trained_rows"] == 0


def test_start_from_an_sft_adapter_keeps_it_as_the_reference(tmp_path, shared_data):
    """--sft_adapter: training continues that adapter and the KL reference is the adapter itself
    (reference=init), not the bare base (reference=base), which an SFT-trained policy is far from."""
    base, sft = sft_adapter_dirs(tmp_path)
    common = [sys.executable, "train_grip.py", "--config", "configs/smoke_grip.toml", "--model.random_init=false",
              f"--model.path={base}", f"--sft_adapter={sft}", "--steps=1",
              "--eval_every=0", f"--data.data_dir={shared_data}"]
    init = run(common + [f"--out_dir={tmp_path / 'init'}"])
    assert init.returncode == 0, init.stderr[-2000:]
    assert "reference adapter" in init.stdout
    base = run(common + [f"--out_dir={tmp_path / 'base_ref'}", "--reference=base"])
    assert base.returncode == 0, base.stderr[-2000:]
    assert "reference base" in base.stdout
    kl_init, kl_base = records(tmp_path / "init")[0]["kl"], records(tmp_path / "base_ref")[0]["kl"]
    assert kl_init < 1e-4 < kl_base, (kl_init, kl_base)
