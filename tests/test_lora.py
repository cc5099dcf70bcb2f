"""LoRA: the math by hand, apply/disable/merge, and parity with PEFT's files and logits.

The PEFT fixture (tests/fixtures/peft_lora, made by tests/fixtures/make_peft_reference.py with
transformers + peft) holds a tiny random Qwen2ForCausalLM, two adapters saved by PEFT (q/v targets;
all-linear with rsLoRA and dropout) with random non-zero A and B, and PEFT's logits for a fixed input.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from timer1.core.lora import (LoRALinear, apply_lora, find_targets, load_adapter, lora_disabled, lora_state_dict,
                              merge_lora, save_adapter)
from timer1.core.model import Qwen2, Qwen2Config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "peft_lora"


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "reference.safetensors"))


def base_model() -> Qwen2:
    return Qwen2.from_pretrained(FIXTURE / "base").eval()


def logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids).float()  # (B, T, V)


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if ".lora_" in name]


def randomise_lora(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


# --------------------------------------------------------------------------------------------------
# The layer, by hand


def test_forward_matches_formula_with_rslora_scale():
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=4, alpha=8, use_rslora=True)
    assert layer.scale == pytest.approx(8 / math.sqrt(4))  # rsLoRA: alpha / sqrt(r) = 4, not alpha / r = 2
    assert LoRALinear(nn.Linear(6, 5), r=4, alpha=8).scale == pytest.approx(2.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 6)
    A, B, W, b = layer.lora_A.weight, layer.lora_B.weight, base.weight, base.bias
    expected = x @ W.T + b + 4.0 * (x @ A.T @ B.T)  # (3, 5)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight is base.weight and layer.bias is base.bias  # shared, not copied


def test_init_kaiming_A_zero_B():
    layer = LoRALinear(nn.Linear(64, 16), r=8, alpha=16)
    assert layer.lora_A.weight.shape == (8, 64) and layer.lora_B.weight.shape == (16, 8)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    bound = 1 / math.sqrt(64)  # kaiming_uniform(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in)
    A = layer.lora_A.weight
    assert A.abs().max() <= bound and A.abs().max() > 0.8 * bound and A.std() > 0.4 * bound


def test_dropout_only_on_lora_branch_and_only_in_train_mode():
    base = nn.Linear(32, 32)
    layer = LoRALinear(base, r=4, alpha=8, dropout=0.5)
    x = torch.randn(4, 32)
    layer.train()
    torch.testing.assert_close(layer(x), base(x))  # B = 0: dropout must not touch the base path
    nn.init.normal_(layer.lora_B.weight)
    train_a, train_b = layer(x), layer(x)
    assert not torch.allclose(train_a, train_b)  # fresh dropout masks each call
    layer.eval()
    exact = base(x) + 2.0 * (x @ layer.lora_A.weight.T @ layer.lora_B.weight.T)
    torch.testing.assert_close(layer(x), exact)
    torch.testing.assert_close(layer(x), layer(x))


def test_half_precision_base_gets_fp32_adapter():
    base = nn.Linear(8, 8, dtype=torch.bfloat16)
    layer = LoRALinear(base, r=2, alpha=4)
    assert layer.lora_A.weight.dtype == torch.float32 and layer.weight.dtype == torch.bfloat16
    assert layer(torch.randn(2, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------------
# apply / disable / merge on the Qwen2 model


def test_zero_B_gives_base_logits_and_keeps_base_keys(reference):
    ids = reference["input_ids"]
    model = base_model()
    base_keys = set(model.state_dict())
    apply_lora(model, targets=("q_proj", "v_proj"), r=4, alpha=8)
    torch.testing.assert_close(logits(model, ids), reference["logits_base"], atol=1e-5, rtol=0)
    assert isinstance(model.model.layers[0].self_attn.q_proj, LoRALinear)
    assert not isinstance(model.model.layers[0].self_attn.k_proj, LoRALinear)
    keys = set(model.state_dict())
    assert base_keys <= keys  # e.g. model.layers.0.self_attn.q_proj.weight unchanged
    assert keys - base_keys == set(lora_state_dict(model))
    assert "model.layers.1.self_attn.v_proj.lora_B.weight" in keys
    # so a base checkpoint loads into the wrapped model with only the LoRA weights missing
    result = model.load_state_dict(base_model().state_dict(), strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) == set(lora_state_dict(model))


def test_only_lora_parameters_train(reference):
    model = apply_lora(base_model(), targets="all-linear", r=4, alpha=8)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in lora_parameters(model)}
    assert len(lora_parameters(model)) == 2 * 2 * 7  # 2 layers x 7 linears x (A, B); lm_head excluded
    model(reference["input_ids"]).float().logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        if ".lora_" in name:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert any(p.grad.abs().sum() > 0 for p in lora_parameters(model))


def test_disabled_equals_base_and_is_restored(reference):
    ids = reference["input_ids"]
    model = apply_lora(base_model(), targets=("q_proj", "v_proj", "down_proj"), r=4, alpha=8)
    randomise_lora(model)
    adapted = logits(model, ids)
    assert (adapted - reference["logits_base"]).abs().max() > 1e-2
    with lora_disabled(model):
        torch.testing.assert_close(logits(model, ids), reference["logits_base"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(model, ids), adapted)
    with pytest.raises(ValueError, match="no LoRA|needs a model with LoRA"):
        with lora_disabled(base_model()):
            pass


def test_merge_equals_unmerged(reference):
    ids = reference["input_ids"]
    model = apply_lora(base_model(), targets="all-linear", r=4, alpha=8, use_rslora=True)
    randomise_lora(model, seed=3)
    adapted = logits(model, ids)
    base_keys = set(base_model().state_dict())
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.model.layers[0].mlp.up_proj) is nn.Linear
    assert set(model.state_dict()) == base_keys
    torch.testing.assert_close(logits(model, ids), adapted, atol=1e-5, rtol=1e-5)


def test_merge_refuses_tied_lm_head():
    model = apply_lora(base_model(), targets=("lm_head",), r=2, alpha=4)  # the fixture ties lm_head
    with pytest.raises(ValueError, match="lm_head.weight is shared"):
        merge_lora(model)


def test_target_matching_follows_peft_rules():
    model = base_model()
    assert find_targets(model, ["q_proj"]) == [
        "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert find_targets(model, ["model.layers.1.mlp.up_proj"]) == ["model.layers.1.mlp.up_proj"]
    assert find_targets(model, r".*\.1\.self_attn\.(k|v)_proj") == [
        "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj"]
    with pytest.raises(ValueError, match="match no module"):  # a suffix must be a whole name part
        find_targets(model, ["proj"])
    all_linear = find_targets(model, "all-linear")
    assert len(all_linear) == 14 and "lm_head" not in all_linear
    assert find_targets(model, ["lm_head"]) == ["lm_head"]


def test_apply_errors():
    with pytest.raises(ValueError, match=r"match no module.*q_proj"):
        apply_lora(base_model(), targets=("qkv",))
    with pytest.raises(ValueError, match="self_attn.*is a Attention"):
        apply_lora(base_model(), targets=("self_attn",))
    with pytest.raises(ValueError, match="positive integer"):
        apply_lora(base_model(), r=0)
    model = apply_lora(base_model())
    with pytest.raises(ValueError, match="already applied"):
        apply_lora(model)


# --------------------------------------------------------------------------------------------------
# PEFT parity


@pytest.mark.parametrize("name", ["qv", "all"])
def test_peft_adapter_gives_peft_logits(reference, name):
    model = load_adapter(base_model(), FIXTURE / f"adapter_{name}")
    got = logits(model, reference["input_ids"])
    torch.testing.assert_close(got, reference[f"logits_{name}"], atol=1e-4, rtol=0)
    assert (got - reference["logits_base"]).abs().max() > 1e-2  # the adapter really changes the model
    config = json.loads((FIXTURE / f"adapter_{name}" / "adapter_config.json").read_text())
    layer = model.model.layers[0].self_attn.q_proj
    assert (layer.r, layer.alpha) == (4, 8)
    assert layer.scale == pytest.approx(8 / math.sqrt(4) if config["use_rslora"] else 8 / 4)


@pytest.mark.parametrize("name", ["qv", "all"])
def test_saved_adapter_has_peft_layout(tmp_path, name):
    peft_dir = FIXTURE / f"adapter_{name}"
    model = load_adapter(base_model(), peft_dir)
    ours = save_adapter(model, tmp_path / "ours", base_model_name_or_path="base")
    assert sorted(p.name for p in ours.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    theirs_cfg = json.loads((peft_dir / "adapter_config.json").read_text())
    ours_cfg = json.loads((ours / "adapter_config.json").read_text())
    assert list(ours_cfg) == list(theirs_cfg)  # same field names, same (sorted) order
    theirs_cfg["target_modules"] = sorted(theirs_cfg["target_modules"])
    ours_cfg["target_modules"] = sorted(ours_cfg["target_modules"])
    assert ours_cfg == theirs_cfg  # peft_version included: we reproduce the 0.21.2 layout
    with safe_open(str(peft_dir / "adapter_model.safetensors"), "pt") as theirs, \
            safe_open(str(ours / "adapter_model.safetensors"), "pt") as mine:
        assert sorted(mine.keys()) == sorted(theirs.keys())
        assert mine.metadata() == theirs.metadata()
        for key in theirs.keys():
            torch.testing.assert_close(mine.get_tensor(key), theirs.get_tensor(key), atol=0, rtol=0)


def test_save_load_round_trip_and_overwrite(reference, tmp_path):
    ids = reference["input_ids"]
    model = apply_lora(base_model(), targets=("k_proj", "o_proj", "gate_proj"), r=3, alpha=6, dropout=0.05)
    randomise_lora(model, seed=7)
    adapted = logits(model, ids)
    out = tmp_path / "adapter"
    save_adapter(model, out)
    save_adapter(model, out)  # replacing an existing adapter directory is allowed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp dirs left behind
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (3, 6, 0.05)
    assert config["target_modules"] == ["k_proj", "o_proj", "gate_proj"] and config["use_rslora"] is False
    reloaded = load_adapter(base_model(), out)
    torch.testing.assert_close(logits(reloaded, ids), adapted, atol=0, rtol=0)
    wrapped = nn.Module()
    wrapped.module, wrapped.no_sync = model, None  # as DistributedDataParallel holds it: "module." must not reach the file
    save_adapter(wrapped, tmp_path / "from_wrapper")
    assert load_file(str(tmp_path / "from_wrapper" / "adapter_model.safetensors")).keys() == \
        load_file(str(out / "adapter_model.safetensors")).keys()
    shutil.rmtree(tmp_path / "from_wrapper")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="refusing to replace"):
        save_adapter(model, tmp_path / "busy")
    with pytest.raises(ValueError, match="no LoRA adapter"):
        save_adapter(base_model(), tmp_path / "none")


# --------------------------------------------------------------------------------------------------
# Load errors: one line, naming the file/tensor, model left untouched


def copy_adapter(tmp_path: Path, name: str = "qv") -> Path:
    return Path(shutil.copytree(FIXTURE / f"adapter_{name}", tmp_path / "adapter"))


def edit_config(adapter: Path, **changes) -> None:
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config.update(changes)
    config_file.write_text(json.dumps(config))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json does not exist"):
        load_adapter(base_model(), tmp_path / "nowhere")
    adapter = copy_adapter(tmp_path)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors does not exist"):
        load_adapter(base_model(), adapter)


def test_adapter_for_another_base_model(tmp_path):
    config = Qwen2Config.from_json(FIXTURE / "base" / "config.json")
    config.hidden_size, config.head_dim = 48, 12  # same module names, other shapes
    other = Qwen2(config)
    message = (r"adapter was made for another base model: tensor "
               r"base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight in .* "
               r"has shape \(4, 32\) but the model expects \(4, 48\)")
    with pytest.raises(ValueError, match=message):
        load_adapter(other, FIXTURE / "adapter_qv")
    assert not any(isinstance(m, LoRALinear) for m in other.modules())  # untouched after the error


def test_tensor_for_unknown_module(tmp_path):
    adapter = copy_adapter(tmp_path)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    tensors["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 32)
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="layers.7.self_attn.q_proj, which this model does not have"):
        load_adapter(base_model(), adapter)


def test_missing_tensor(tmp_path):
    adapter = copy_adapter(tmp_path)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    del tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match=r"missing, e\.g\. \S*layers\.1\.self_attn\.v_proj\.lora_B\.weight"):
        load_adapter(base_model(), adapter)


def test_unknown_target(tmp_path):
    adapter = copy_adapter(tmp_path)
    edit_config(adapter, target_modules=["c_attn"])
    with pytest.raises(ValueError, match=r"targets \['c_attn'\] match no module"):
        load_adapter(base_model(), adapter)


@pytest.mark.parametrize("changes, message", [
    ({"peft_type": "IA3"}, "only 'LORA'"),
    ({"use_dora": True}, "use_dora=True is not supported"),
    ({"bias": "all"}, "bias='all' is not supported"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save=.* is not supported"),
    ({"rank_pattern": {"q_proj": 8}}, "rank_pattern=.* is not supported"),
    ({"fan_in_fan_out": True}, "fan_in_fan_out=True is not supported"),
])
def test_unsupported_options_are_refused(tmp_path, changes, message):
    adapter = copy_adapter(tmp_path)
    edit_config(adapter, **changes)
    with pytest.raises(ValueError, match=message):
        load_adapter(base_model(), adapter)


def test_load_refuses_model_with_lora():
    model = apply_lora(base_model())
    with pytest.raises(ValueError, match="already applied"):
        load_adapter(model, FIXTURE / "adapter_qv")
