"""timer1.train.checkpoint and timer1.util.seeding: atomic saves, the latest pointer, keep-best-k, exact RNG restore and resume."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from timer1.train.checkpoint import (CheckpointContents, best_checkpoint, latest_checkpoint, list_checkpoints,
                                     read_best_index, read_train_state, resolve_checkpoint, restore_train_state,
                                     save_checkpoint)
from timer1.train.config import GRIPConfig, load_config
from timer1.util.seeding import capture_rng_state, restore_rng_state, seed_everything


class TinyModel(torch.nn.Module):
    """Stands in for Qwen2: a linear layer, dropout (draws from torch's RNG), HF-style saving."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x))

    def save_pretrained(self, path, state=None):
        save_file({k: v.contiguous() for k, v in (state or self.state_dict()).items()}, str(Path(path) / "model.safetensors"))
        (Path(path) / "config.json").write_text('{"model_type": "tiny"}')

    def load_pretrained(self, path):
        self.load_state_dict(load_file(str(Path(path) / "model.safetensors")))


class ExplodingModel(TinyModel):
    """A save that dies half way: one file written, then an error (disk full, preemption...)."""

    def save_pretrained(self, path, state=None):
        (Path(path) / "model.safetensors").write_bytes(b"half a tensor")
        raise OSError("simulated crash mid-save")


def _train_step(model, optimizer):
    """One step that draws from torch (data, dropout), NumPy and Python RNGs."""
    x = torch.randn(8, 4)
    scale = 1.0 + 0.1 * float(np.random.randn()) + 0.1 * random.random()
    loss = model(x).pow(2).mean() * scale
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _setup(seed=0):
    seed_everything(seed)
    model = TinyModel()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def test_rng_capture_restore_reproduces_draws():
    seed_everything(123)
    state = capture_rng_state()
    first = (random.random(), np.random.randn(3).tolist(), torch.randn(3).tolist(), np.random.randn())
    random.random(), np.random.randn(5), torch.rand(7)           # move every generator on
    restore_rng_state(state)
    again = (random.random(), np.random.randn(3).tolist(), torch.randn(3).tolist(), np.random.randn())
    assert again == first


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    np.random.randn()                                            # numpy caches a gaussian after odd draws
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(), torch.randn(2).tolist())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.randn(), torch.randn(2).tolist()) == expected


def test_save_layout_and_latest_pointer(tmp_path):
    model, optimizer = _setup()
    cfg = GRIPConfig()
    cfg.G, cfg.model.random_init = 4, True
    metrics = {"loss": torch.tensor(0.5), "mse": np.float32(0.25), "n": 3}
    path = save_checkpoint(tmp_path, 3, model, CheckpointContents(optimizer.state_dict(), config=cfg, metrics=metrics))
    assert path == tmp_path / "step_000003"
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json", "train_state.pt",
                                                "config.toml", "metrics.json"}
    assert (tmp_path / "latest").read_text() == "step_000003\n"
    assert latest_checkpoint(tmp_path) == path
    assert load_config(GRIPConfig, ["--config", str(path / "config.toml")]) == cfg
    assert json.loads((path / "metrics.json").read_text()) == {"step": 3, "loss": 0.5, "mse": 0.25, "n": 3}
    state = torch.load(path / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and state["adapter_only"] is False
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp dirs left


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    # uninterrupted: 6 steps
    model, optimizer = _setup()
    for _ in range(6):
        _train_step(model, optimizer)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_next_draw = torch.rand(3)

    # interrupted after 3 steps, then resumed in a "new process" (fresh objects, scrambled RNGs)
    model, optimizer = _setup()
    for _ in range(3):
        _train_step(model, optimizer)
    save_checkpoint(tmp_path, 3, model, CheckpointContents(optimizer.state_dict(), rng_state=capture_rng_state()))

    model, optimizer = _setup(seed=999)
    ckpt = latest_checkpoint(tmp_path)
    model.load_pretrained(ckpt)
    state = read_train_state(ckpt)
    restore_train_state(state, optimizer)
    assert state["step"] == 3
    for _ in range(state["step"], 6):
        _train_step(model, optimizer)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert torch.equal(torch.rand(3), expected_next_draw)


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path):
    model, optimizer = _setup()
    good = save_checkpoint(tmp_path, 1, model, CheckpointContents(optimizer.state_dict()))
    good_weights = (good / "model.safetensors").read_bytes()

    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, 2, ExplodingModel(), CheckpointContents(optimizer.state_dict()))
    assert not (tmp_path / "step_000002").exists()
    assert not (tmp_path / ".tmp-step_000002").exists()          # cleaned up on the way out
    assert latest_checkpoint(tmp_path) == good
    assert (good / "model.safetensors").read_bytes() == good_weights

    class Unsaveable:                                            # a crash while writing train_state
        def __reduce__(self):
            raise RuntimeError("simulated crash in optimizer state")

    with pytest.raises(RuntimeError, match="optimizer state"):
        save_checkpoint(tmp_path, 2, model, CheckpointContents({"state": Unsaveable()}))
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["step_000001"]
    assert (tmp_path / "latest").read_text() == "step_000001\n"


def test_hard_kill_leftover_is_ignored_then_replaced(tmp_path):
    model, optimizer = _setup()
    good = save_checkpoint(tmp_path, 1, model, CheckpointContents(optimizer.state_dict()))
    leftover = tmp_path / ".tmp-step_000002"                     # what a SIGKILL mid-save leaves
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    half_named = tmp_path / "step_000009"                        # a stray dir without train_state.pt
    half_named.mkdir()
    assert latest_checkpoint(tmp_path) == good
    (tmp_path / "latest").unlink()                               # even without the pointer
    assert latest_checkpoint(tmp_path) == good
    path = save_checkpoint(tmp_path, 2, model, CheckpointContents(optimizer.state_dict()))
    assert not leftover.exists() and latest_checkpoint(tmp_path) == path
    load_file(str(path / "model.safetensors"))                   # the real, complete weights


def test_resaving_a_step_replaces_it(tmp_path):
    model, optimizer = _setup()
    save_checkpoint(tmp_path, 5, model, CheckpointContents(optimizer.state_dict(), metrics={"v": 1}))
    save_checkpoint(tmp_path, 5, model, CheckpointContents(optimizer.state_dict(), metrics={"v": 2}))
    assert json.loads((tmp_path / "step_000005" / "metrics.json").read_text())["v"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "latest", "step_000005"]


def test_keep_best_k_and_last(tmp_path):
    model, optimizer = _setup()
    scores = {1: 5.0, 2: 1.0, 3: None, 4: 0.5, 5: 3.0, 6: 6.0, 7: None}
    for step, score in scores.items():
        save_checkpoint(tmp_path, step, model, CheckpointContents(optimizer.state_dict()), score=score, keep_best=2, keep_last=1)
    kept = [p.name for _, p in list_checkpoints(tmp_path)]
    index = read_best_index(tmp_path)
    assert kept == ["step_000002", "step_000004", "step_000007"]  # best: 0.5 (step 4), 1.0 (step 2)
    assert index["best"] == ["step_000004", "step_000002"]
    assert latest_checkpoint(tmp_path).name == "step_000007"   # the newest, unscored, is kept
    assert best_checkpoint(tmp_path).name == index["best"][0]
    assert set(index["scores"]) == set(index["best"])            # deleted ones leave the index


def test_latest_is_never_pruned(tmp_path):
    model, optimizer = _setup()
    save_checkpoint(tmp_path, 1, model, CheckpointContents(optimizer.state_dict()), score=0.1, keep_best=1, keep_last=0)
    save_checkpoint(tmp_path, 2, model, CheckpointContents(optimizer.state_dict()), score=9.0, keep_best=1, keep_last=0)
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["step_000001", "step_000002"]
    save_checkpoint(tmp_path, 3, model, CheckpointContents(optimizer.state_dict()), score=8.0, keep_best=1, keep_last=0)
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["step_000001", "step_000003"]


def test_per_rank_rng_states(tmp_path):
    model, optimizer = _setup()
    states = []
    for seed in (10, 11):                                        # what all_gather_object would collect
        seed_everything(seed)
        states.append(capture_rng_state())
    save_checkpoint(tmp_path, 1, model, CheckpointContents(optimizer.state_dict(), rng_state=states))
    seed_everything(11)
    expected = torch.rand(2)
    torch.manual_seed(0)
    restore_train_state(read_train_state(tmp_path / "step_000001"), rank=1)
    assert torch.equal(torch.rand(2), expected)
    with pytest.raises(ValueError, match="2 ranks, this is rank 2"):
        restore_train_state(read_train_state(tmp_path / "step_000001"), rank=2)


def test_adapter_only_saves_a_peft_adapter_that_loads_back(tmp_path):
    from timer1.core.lora import apply_lora, load_adapter
    from timer1.core.model import Qwen2, Qwen2Config

    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = apply_lora(Qwen2(config), r=2, alpha=4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()                                  # B = 0 would make any load look right

    class FakeDDP(torch.nn.Module):                              # saving unwraps DDP
        def __init__(self, module):
            super().__init__()
            self.module = module

        def no_sync(self):
            raise AssertionError("not used")

    path = save_checkpoint(tmp_path, 4, FakeDDP(model), CheckpointContents(base_model="runs/x/base_model"))
    assert {p.name for p in path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                "train_state.pt", "metrics.json"}
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == "runs/x/base_model"
    assert read_train_state(path)["adapter_only"] is True
    assert resolve_checkpoint(path) == path
    fresh = Qwen2(config)
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "lora_" not in k}, strict=False)
    load_adapter(fresh, path)
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(fresh(ids), model(ids))


def test_qwen2_checkpoint_loads_with_from_pretrained(tmp_path):
    from timer1.core.model import Qwen2, Qwen2Config
    model = Qwen2(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    save_checkpoint(tmp_path, 1, model, score=1.0)
    loaded = Qwen2.from_pretrained(resolve_checkpoint(tmp_path))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_lora_adapter_checkpoint_loads_with_load_adapter(tmp_path):
    from timer1.core.lora import apply_lora, load_adapter, lora_state_dict
    from timer1.core.model import Qwen2, Qwen2Config
    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = Qwen2(config)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, ("q_proj", "v_proj"), r=2, alpha=4)
    with torch.no_grad():                                        # B starts at zero: make it count
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    save_checkpoint(tmp_path, 2, model, score=0.5)
    fresh = Qwen2(config)
    fresh.load_state_dict(base_state)
    load_adapter(fresh, resolve_checkpoint(tmp_path))
    saved, loaded = lora_state_dict(model), lora_state_dict(fresh)
    assert saved.keys() == loaded.keys() and len(saved) == 4
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key


def test_resolve_checkpoint_and_load_errors(tmp_path):
    model, optimizer = _setup()
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither model weights nor checkpoints"):
        resolve_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 1, model, CheckpointContents(optimizer.state_dict()), keep_last=2)
    assert resolve_checkpoint(tmp_path).name == "step_000001"       # unscored: latest
    save_checkpoint(tmp_path, 2, model, CheckpointContents(optimizer.state_dict()), score=3.0, keep_last=2)
    save_checkpoint(tmp_path, 3, model, CheckpointContents(optimizer.state_dict()), keep_last=2)
    assert resolve_checkpoint(tmp_path).name == "step_000002"       # scored: the best one
    with pytest.raises(FileNotFoundError, match="no train_state.pt in checkpoint"):
        read_train_state(tmp_path)
    save_checkpoint(tmp_path, 4, model, keep_last=3)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        restore_train_state(read_train_state(tmp_path / "step_000004"), optimizer)
