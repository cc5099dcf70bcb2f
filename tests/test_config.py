"""timer1.train.config: defaults, TOML presets, --key=value overrides, errors, help, save/load round trip."""

import json
from pathlib import Path

import pytest

from timer1.train.config import (ConfigError, DataConfig, GRIPConfig, LoRAConfig, ModelConfig, OptimConfig, SFTConfig,
                                 from_dict, load_config, load_config_or_exit, save_config, to_dict)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RANDOM = ["--model.random_init=true"]           # a runnable config needs a model source


def test_defaults_follow_the_paper():
    grip = GRIPConfig()
    assert (grip.k, grip.G, grip.eps, grip.beta, grip.batch, grip.temperature) == (3, 16, 0.2, 0.04, 16, 1.0)
    assert grip.selection == "cluster" and grip.weights == "softmax" and grip.loss_agg == "seq-mean"
    assert grip.optim.lr == 1e-6
    sft = SFTConfig()
    assert sft.epochs == 1 and sft.optim.lr == 5e-5
    assert isinstance(sft.model, ModelConfig) and isinstance(sft.lora, LoRAConfig)
    assert isinstance(sft.data, DataConfig) and isinstance(sft.optim, OptimConfig)
    # groups are separate objects per instance (default_factory), not shared
    assert SFTConfig().lora is not SFTConfig().lora


def test_random_model_dims_use_hf_config_names():
    from timer1.core.model import Qwen2Config
    cfg = load_config(SFTConfig, RANDOM + ["--model.hidden_size=48", "--model.num_layers=3",
                                           "--model.num_heads=6", "--model.num_kv_heads=3"])
    qcfg = Qwen2Config.from_dict(cfg.model.config_dict())
    assert (qcfg.hidden_size, qcfg.num_hidden_layers, qcfg.num_attention_heads, qcfg.num_key_value_heads) \
        == (48, 3, 6, 3)
    assert qcfg.vocab_size == cfg.model.vocab_size and qcfg.rope_theta == 1e6 and qcfg.tie_word_embeddings


def test_overrides_coerce_to_field_types():
    cfg = load_config(GRIPConfig, RANDOM + [
        "--G=8", "--eps=0.1", "--optim.lr=3e-6", "--lora.targets=q_proj, v_proj", "--resume=yes",
        "--selection=local", "--optim.betas=0.8,0.95", "--data.channels=", "--out_dir=/tmp/x y",
        "--model.gradient_checkpointing=0", "--optim.warmup_steps=1_000",
    ])
    assert cfg.G == 8 and type(cfg.G) is int
    assert cfg.eps == 0.1 and cfg.optim.lr == 3e-6 and type(cfg.optim.lr) is float
    assert cfg.lora.targets == ("q_proj", "v_proj")
    assert cfg.resume is True and cfg.model.gradient_checkpointing is False
    assert cfg.selection == "local" and cfg.optim.betas == (0.8, 0.95)
    assert cfg.data.channels == () and cfg.out_dir == "/tmp/x y" and cfg.optim.warmup_steps == 1000


def test_partial_group_keeps_run_specific_defaults(tmp_path):
    cfg = load_config(GRIPConfig, RANDOM + ["--optim.warmup_steps=5"])
    assert cfg.optim.lr == 1e-6 and cfg.optim.warmup_steps == 5       # not OptimConfig's 5e-5
    preset = tmp_path / "p.toml"
    preset.write_text("[optim]\ngrad_clip = 0.5\n[model]\nrandom_init = true\n")
    assert load_config(GRIPConfig, ["--config", str(preset)]).optim.lr == 1e-6


@pytest.mark.parametrize("raw,expected", [("true", True), ("1", True), ("Yes", True), ("on", True),
                                          ("false", False), ("0", False), ("NO", False), ("off", False)])
def test_bool_spellings(raw, expected):
    assert load_config(SFTConfig, RANDOM + [f"--resume={raw}"]).resume is expected


def test_preset_then_overrides(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('G = 4\nseed = 7\n[model]\nrandom_init = true\nhidden_size = 16\n'
                      '[optim]\nlr = 1e-4\nbetas = [0.5, 0.6]\n')
    cfg = load_config(GRIPConfig, ["--G=6", "--config", str(preset), "--optim.lr=2e-4"])
    assert cfg.G == 6                            # command line beats the preset, wherever --config is
    assert cfg.seed == 7 and cfg.model.hidden_size == 16 and cfg.optim.betas == (0.5, 0.6)
    assert cfg.optim.lr == 2e-4
    assert cfg.optim.weight_decay == OptimConfig().weight_decay      # untouched keys keep defaults
    assert cfg.model.num_layers == ModelConfig().num_layers


@pytest.mark.parametrize("argv,named", [
    (["--nonsense=1"], "'nonsense'"),
    (["--optim.nonsense=1"], "'optim.nonsense'"),
    (["--nogroup.lr=1"], "'nogroup.lr'"),
    (["--G.x=1"], "'G.x'"),
])
def test_unknown_key_is_an_error_naming_it(argv, named):
    with pytest.raises(ConfigError, match="unknown config key " + named.replace(".", r"\.")):
        load_config(GRIPConfig, RANDOM + argv)


@pytest.mark.parametrize("argv,named", [
    (["--G=three"], "'G'"), (["--G=2.5"], "'G'"), (["--eps=abc"], "'eps'"),
    (["--resume=maybe"], "'resume'"), (["--selection=best"], "'selection'"),
    (["--optim.betas=0.9"], "'optim.betas'"), (["--optim.betas=0.9,x"], "'optim.betas'"),
    (["--model.dtype=float8"], "'model.dtype'"), (["--G=1"], "'G'"), (["--optim.lr=-1"], "'optim.lr'"),
    (["--top_p=0"], "'top_p'"), (["--model.num_heads=3"], "'model.num_heads'"),
])
def test_bad_value_is_an_error_naming_it(argv, named):
    with pytest.raises(ConfigError) as info:
        load_config(GRIPConfig, RANDOM + argv)
    message = str(info.value)
    assert named in message and "\n" not in message


def test_structural_errors_are_one_line():
    cases = [
        (["--model=3"], "'model' is a group"),
        (["--seed", "3"], "missing value for '--seed'"),
        (["positional"], "unexpected argument 'positional'"),
        (["--seed"], "missing value for '--seed'"),
        ([], "'model.path' is empty"),
        (["--config", "/nonexistent/p.toml"], "config file not found: /nonexistent/p.toml"),
    ]
    for argv, fragment in cases:
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
            load_config(SFTConfig, argv)


def test_a_bool_field_stands_alone_as_a_switch():
    base = ["--model.path=m"]
    assert load_config(SFTConfig, base + ["--resume"]).resume is True
    assert load_config(SFTConfig, base + ["--resume", "--resume=false"]).resume is False   # the last one wins
    assert load_config(SFTConfig, base + ["--lora.enabled"]).lora.enabled is True           # inside a group
    with pytest.raises(ConfigError, match="missing value for '--lora.r'"):
        load_config(SFTConfig, base + ["--lora.r"])


def test_load_config_or_exit_prints_one_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(SFTConfig, RANDOM + ["--epochs=many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: bad value for 'epochs': 'many' (expected int)\n"
    assert load_config_or_exit(SFTConfig, RANDOM + ["--epochs=2"]).epochs == 2


def test_toml_errors_name_file_and_key(tmp_path):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("[optim]\nlearning_rate = 1e-4\n")
    with pytest.raises(ConfigError, match=r"bad_key\.toml: unknown config key 'optim\.learning_rate'"):
        load_config(SFTConfig, ["--config", str(bad_key)])
    bad_type = tmp_path / "bad_type.toml"
    bad_type.write_text('epochs = "two"\n')
    with pytest.raises(ConfigError, match=r"bad_type\.toml: bad value for 'epochs'"):
        load_config(SFTConfig, ["--config", str(bad_type)])
    bad_bool = tmp_path / "bad_bool.toml"
    bad_bool.write_text("resume = 1\n")          # TOML has real booleans; 1 is not one
    with pytest.raises(ConfigError, match="bad value for 'resume'"):
        load_config(SFTConfig, ["--config", str(bad_bool)])
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_config(SFTConfig, ["--config", str(broken)])
    group_as_value = tmp_path / "group.toml"
    group_as_value.write_text("model = 3\n")
    with pytest.raises(ConfigError, match="'model' is a group"):
        load_config(SFTConfig, ["--config", str(group_as_value)])


def _unusual_config() -> GRIPConfig:
    cfg = GRIPConfig()
    cfg.model.random_init = True
    cfg.model.path = 'C:\\odd "quoted" path/é'
    cfg.lora.targets = ("q_proj",)
    cfg.data.channels = ()
    cfg.optim.lr = 1.5e-7
    cfg.optim.betas = (0.9, 0.95)
    cfg.optim.grad_clip = 1e16
    cfg.G, cfg.selection, cfg.resume = 4, "uniform", True
    return cfg


def test_saved_toml_is_a_valid_preset_giving_an_equal_config(tmp_path):
    cfg = _unusual_config()
    save_config(cfg, tmp_path / "config.toml")
    again = load_config(GRIPConfig, ["--config", str(tmp_path / "config.toml")])
    assert again == cfg and to_dict(again) == to_dict(cfg)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]      # no temp file left behind


def test_to_dict_from_dict_round_trip_and_json_types():
    cfg = SFTConfig()
    data = to_dict(cfg)
    assert data["lora"]["targets"] == list(LoRAConfig().targets)          # tuples become lists
    assert from_dict(SFTConfig, json.loads(json.dumps(data))) == cfg


def test_help_lists_every_field_with_default_and_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        load_config(GRIPConfig, ["--help"], description="GRIP reinforcement learning.")
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "GRIP reinforcement learning." in text
    for name, value in to_dict(GRIPConfig()).items():
        if isinstance(value, dict):
            for sub in value:
                assert f"--{name}.{sub}=" in text, sub
        else:
            assert f"--{name}=" in text, name
    assert "--eps=<float>  (default: 0.2)" in text
    assert "--selection=<cluster|local|uniform>  (default: cluster)" in text
    assert "PPO clip range" in text
    assert "--optim.lr=<float>  (default: 1e-06)" in text        # the run's own group default
    assert "--lora.targets=<list of str>  (default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)" in text


def _class_for(preset: Path) -> type:
    return GRIPConfig if any(rl in preset.stem for rl in ("grip", "grpo", "dapo")) else SFTConfig


def test_every_shipped_preset_parses():
    presets = sorted(CONFIGS.glob("*.toml"))
    names = {p.stem for p in presets}
    assert {"smoke_sft", "smoke_grip", "demo_sft", "demo_grip", "sft_qwen2.5_7b", "grip_qwen2.5_7b"} <= names
    for preset in presets:
        cfg = load_config(_class_for(preset), ["--config", str(preset)])
        assert isinstance(cfg, _class_for(preset))


def test_paper_presets_keep_paper_settings():
    grip = load_config(GRIPConfig, ["--config", str(CONFIGS / "grip_qwen2.5_7b.toml")])
    assert (grip.k, grip.G, grip.eps, grip.beta, grip.batch, grip.optim.lr) == (3, 16, 0.2, 0.04, 16, 1e-6)
    sft = load_config(SFTConfig, ["--config", str(CONFIGS / "sft_qwen2.5_7b.toml")])
    assert (sft.epochs, sft.optim.lr, sft.model.dtype) == (1, 5e-5, "bfloat16")
