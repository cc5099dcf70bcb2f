"""timer1.tools.export: a run's best checkpoint becomes a self-contained model directory that loads and
predicts exactly like the checkpoint, with its configs, a metrics summary and the model card."""

import json

import pytest
import torch
from conftest import TINY_CONFIG

from timer1.core.codec import PromptFormat
from timer1.core.lora import apply_lora
from timer1.core.policy import load_policy, save_policy, save_policy_files
from timer1.tools.export import ADAPTER_FILES, INFERENCE_FILES, export, main
from timer1.train.checkpoint import CheckpointContents, save_checkpoint
from timer1.train.config import SFTConfig
from timer1.train.random_init import random_policy


def _run(tmp_path, name, seeds_and_scores):
    """A run directory like train_sft.py leaves: several scored checkpoints, the best kept."""
    run = tmp_path / name
    for step, (seed, score) in enumerate(seeds_and_scores, start=1):
        policy = random_policy(TINY_CONFIG, seed=seed, prompt_format=PromptFormat("compact", digits=2))
        files = CheckpointContents(config=SFTConfig(), metrics={"val_mase": score},
                                   write_files=lambda d: save_policy_files(policy.tokenizer, policy.prompt_format, d))
        save_checkpoint(run, step, policy.model, files, score=score, keep_best=1, keep_last=1)
    return run


def _report(path, mse):
    entry = {"mse": mse, "mae": 1.0, "mase": 0.9, "crps": 0.8, "n": 10, "unparsed": 0, "n_windows": 10,
             "seconds_per_window": 2.0}
    path.write_text(json.dumps({"results": {"ETTh1": {"timer1": entry}},
                                "config": {"protocol": "paper", "limit": 10}}))
    return path


def test_export_copies_the_best_checkpoint_and_it_predicts_the_same(tmp_path):
    run = _run(tmp_path, "sft", [(1, 0.5), (2, 0.9)])           # step 1 scored best, step 2 is latest
    out = export(run, tmp_path / "model", stages={"sft": run}, reports={"sft": _report(tmp_path / "r.json", 3.5)})
    assert sorted(p.name for p in out.iterdir()) == sorted([*INFERENCE_FILES, "metrics.json", "training"])
    assert sorted(p.name for p in (out / "training").iterdir()) == ["sft.toml", "sft_metrics.json"]
    assert json.loads((out / "training" / "sft_metrics.json").read_text())["val_mase"] == 0.5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"].endswith("step_000001")
    assert metrics["evaluations"]["sft"]["results"]["ETTh1"]["timer1"]["mse"] == 3.5
    assert metrics["evaluations"]["sft"]["protocol"] == "paper" and metrics["evaluations"]["sft"]["limit"] == 10

    # on CPU, where equal weights give bit-equal logits (on a GPU, 12 test workers at once made bf16
    # kernels differ in the last bit)
    exported, original = load_policy(out, device="cpu"), load_policy(run / "step_000001", device="cpu")
    assert exported.prompt_format == PromptFormat("compact", digits=2)
    ids = torch.tensor([exported.tokenizer.encode("Series of 4 values: 10,20,30,40")])
    assert torch.equal(exported.model(ids), original.model(ids))


def test_a_lora_run_exports_as_its_adapter_under_the_named_base(tmp_path):
    base = save_policy(random_policy(TINY_CONFIG, seed=4, prompt_format=PromptFormat("compact", digits=2)),
                       tmp_path / "base")
    policy = load_policy(base)
    apply_lora(policy.model, r=4, alpha=8)
    torch.manual_seed(0)
    with torch.no_grad():  # B starts at zero: give the adapter an effect worth checking
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.1)
    run = tmp_path / "grip"
    files = CheckpointContents(config=SFTConfig(), base_model="models/local-path",
                               write_files=lambda d: save_policy_files(policy.tokenizer, policy.prompt_format, d))
    save_checkpoint(run, 1, policy.model, files, score=1.0)
    (run / "step_000001" / "timer1_calibration.json").write_text('{"band_scale": 2.0}')

    out = export(run, tmp_path / "adapter", base=str(base))
    assert sorted(p.name for p in out.iterdir()) == sorted([*ADAPTER_FILES, "timer1_calibration.json", "metrics.json"])
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    assert json.loads((run / "step_000001" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "models/local-path"                                       # the run itself is left as it was
    exported = load_policy(base, adapter=out)
    ids = torch.tensor([exported.tokenizer.encode("Series of 4 values: 10,20,30,40")])
    assert torch.equal(exported.model(ids), policy.model(ids))
    assert not torch.equal(exported.model(ids), load_policy(base).model(ids))
    with pytest.raises(ValueError, match="full model"):
        export(_run(tmp_path, "full", [(1, 1.0)]), tmp_path / "x", base="any")


def test_re_export_keeps_the_card_from_the_directory_it_replaces(tmp_path):
    run = _run(tmp_path, "grip", [(3, 1.0)])
    out = tmp_path / "model"
    export(run, out)
    (out / "README.md").write_text("# card\nmeasured: 1.0\n")
    export(run, out, card=out / "README.md")
    assert (out / "README.md").read_text() == "# card\nmeasured: 1.0\n"
    assert not any(p.name.startswith((".tmp-", ".old-")) for p in tmp_path.iterdir())


def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    run = _run(tmp_path, "sft", [(1, 1.0)])
    out = tmp_path / "model"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for argv, message in [([str(tmp_path / "nope"), str(out)], "not found"),
                          ([str(run), str(out), "--report", "sft"], "LABEL=PATH"),
                          ([str(run), str(out), "--report", f"sft={bad}"], "is not JSON"),
                          ([str(run), str(out), "--report", f"sft={tmp_path / 'none.json'}"], "report not found")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
    (run / "step_000001" / "tokenizer.json").unlink()
    assert main([str(run), str(out)]) == 2
    assert "lacks tokenizer.json" in capsys.readouterr().err
    assert main([str(_run(tmp_path, "ok", [(1, 1.0)])), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "model.safetensors").is_file()


def test_report_without_results_is_refused(tmp_path):
    run = _run(tmp_path, "sft", [(1, 1.0)])
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="no 'results'"):
        export(run, tmp_path / "model", reports={"x": report})
