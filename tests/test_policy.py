"""timer1.core.policy: random tiny policies, the HF layout they save to, and clear load errors."""

import json

import pytest
import torch

from timer1.core.policy import load_policy, save_policy
from timer1.core.sampler import generate
from timer1.train.random_init import random_policy

TINY = {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def policy():
    return random_policy(TINY, seed=1)


def test_save_then_load_gives_the_same_policy(policy, tmp_path):
    save_policy(policy, tmp_path / "m")
    again = load_policy(tmp_path / "m")
    ids = torch.tensor([policy.tokenizer.encode("2017-10-24 00:00:00 12.5")])
    torch.testing.assert_close(again.model(ids), policy.model(ids), rtol=0, atol=0)
    assert again.tokenizer.encode("<think>1,2</think>") == policy.tokenizer.encode("<think>1,2</think>")
    generation = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == policy.tokenizer.eos_ids[0]
    a = generate(policy.model, [ids[0].tolist()], max_new_tokens=8, temperature=0)
    b = generate(again.model, [ids[0].tolist()], max_new_tokens=8, temperature=0)
    assert a.tokens == b.tokens


def test_random_policy_is_seeded():
    a, b = random_policy(TINY, seed=5), random_policy(TINY, seed=5)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(p, q), name
    assert a.model.model.layers[0].input_layernorm.weight.eq(1).all()


def test_load_errors(policy, tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a Qwen2 checkpoint"):
        load_policy(tmp_path / "empty")
    small = random_policy({**TINY, "vocab_size": 300}, seed=0)
    save_policy(small, tmp_path / "small")
    policy.tokenizer.save_pretrained(tmp_path / "small")  # a 400-id tokenizer beside 300 rows
    with pytest.raises(ValueError, match="do not belong together"):
        load_policy(tmp_path / "small")


def test_a_run_directory_resolves_to_its_best_checkpoint_which_loads(tmp_path):
    from timer1.core.policy import save_policy_files
    from timer1.train.checkpoint import CheckpointContents, resolve_checkpoint, save_checkpoint

    run = tmp_path / "run"
    policies = [random_policy(TINY, seed=seed) for seed in (5, 6)]
    for step, (p, score) in enumerate(zip(policies, (0.5, 0.9)), start=1):   # step 1 best, step 2 latest
        files = CheckpointContents(write_files=lambda d: save_policy_files(p.tokenizer, p.prompt_format, d))
        save_checkpoint(run, step, p.model, files, score=score)
    with pytest.raises(ValueError, match="a training run"):
        load_policy(run)                         # a run is not a checkpoint: the core loads checkpoints only
    loaded = load_policy(resolve_checkpoint(run))
    assert loaded.source.endswith("step_000001")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded.model(ids), policies[0].model(ids))


def test_prompt_format_travels_with_the_checkpoint(tmp_path):
    from timer1.core.codec import PromptFormat

    compact = random_policy(TINY, seed=2, prompt_format=PromptFormat("compact", digits=3))
    save_policy(compact, tmp_path / "c")
    assert load_policy(tmp_path / "c").prompt_format == PromptFormat("compact", digits=3)
    (tmp_path / "c" / "timer1_prompt.json").write_text('{"style": "haiku"}')
    with pytest.raises(ValueError, match="timer1_prompt.json: not a valid prompt format"):
        load_policy(tmp_path / "c")
