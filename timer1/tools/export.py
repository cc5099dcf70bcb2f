"""Export a trained run as a self-contained model directory (how ``timer1/checkpoints/timer1-tiny`` is made).

Copies the inference files of a run's best checkpoint, adds each training stage's resolved config
and validation metrics (``training/``), a ``metrics.json`` summary of ``evaluate.py`` reports and a
model card, and swaps the directory into place whole::

    python -m timer1.tools.export runs/tiny_grip timer1/checkpoints/timer1-tiny \\
        --stage sft=runs/tiny_sft --stage grip=runs/tiny_grip \\
        --report sft=out/eval_sft.json --report grip=out/eval_grip.json \\
        --card timer1/checkpoints/timer1-tiny/README.md

A LoRA run exports as its adapter in PEFT's layout; ``--base`` names the base model in
``adapter_config.json`` (a run records the local path it trained from), e.g. the hub name
``HuggingFaceTB/SmolLM2-135M-Instruct`` that timer1 converts from the installed GGUF on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from timer1.core.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from timer1.train.checkpoint import resolve_checkpoint
from timer1.util.atomic import replacing_directory, write_json_atomic

COMMON_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "timer1_prompt.json")
INFERENCE_FILES = ("config.json", "model.safetensors", *COMMON_FILES)
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, *COMMON_FILES)
OPTIONAL_FILES = ("timer1_calibration.json",)  # band factors per level from python -m timer1.forecast.calibrate
REPORT_FIELDS = ("mse", "mae", "mase", "crps", "n", "unparsed", "n_windows")


def _labelled(pairs: list[str], what: str) -> dict[str, Path]:
    """``["sft=runs/a", "grip=runs/b"]`` -> {"sft": Path("runs/a"), ...}; a clear error otherwise."""
    out: dict[str, Path] = {}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"--{what} wants LABEL=PATH, got {pair!r}")
        out[label] = Path(path)
    return out


def summarise_report(report: dict) -> dict:
    """The headline numbers of one ``evaluate.py`` report: per dataset and method, the fields in
    REPORT_FIELDS, plus the protocol and window limit it was run with."""
    results = {dataset: {method: {k: entry.get(k) for k in REPORT_FIELDS} for method, entry in methods.items()}
               for dataset, methods in report["results"].items()}
    config = report.get("config", {})
    return {"protocol": config.get("protocol"), "limit": config.get("limit"), "results": results}


def read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"report not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(report, dict) or "results" not in report:
        raise ValueError(f"{path} is not an evaluate.py report (no 'results')")
    return report


def stage_files(stage: str, run: Path) -> dict[str, Path]:
    """The resolved config and validation metrics of one training stage, from its best checkpoint."""
    ckpt = resolve_checkpoint(run)
    files = {f"{stage}.toml": ckpt / "config.toml", f"{stage}_metrics.json": ckpt / "metrics.json"}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{ckpt} has no {path.name}: was it written by train_sft.py/train_grip.py?")
    return files


def export(source: str | os.PathLike, out: str | os.PathLike, *, stages: dict[str, Path] | None = None,
           reports: dict[str, Path] | None = None, card: str | os.PathLike | None = None, base: str = "") -> Path:
    """Write the model directory `out` from checkpoint or run directory `source` (see module doc)."""
    ckpt = resolve_checkpoint(source)
    adapter = (ckpt / ADAPTER_CONFIG).is_file()
    if base and not adapter:
        raise ValueError(f"--base names the base of an adapter, but {ckpt} is a full model")
    files = [*(ADAPTER_FILES if adapter else INFERENCE_FILES), *(n for n in OPTIONAL_FILES if (ckpt / n).is_file())]
    missing = [name for name in files if not (ckpt / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{ckpt} lacks {', '.join(missing)}: not a complete timer1 checkpoint")
    staged = {name: path for stage, run in (stages or {}).items() for name, path in stage_files(stage, run).items()}
    summaries = {label: summarise_report(read_report(path)) for label, path in (reports or {}).items()}
    card_text = Path(card).read_text() if card else None         # read before `out` (may hold it) is replaced

    with replacing_directory(out) as tmp:
        for name in files:
            shutil.copyfile(ckpt / name, tmp / name)
        if base:  # the copy's config, with the base this directory is to be loaded on
            adapter_config = json.loads((ckpt / ADAPTER_CONFIG).read_text())
            write_json_atomic(tmp / ADAPTER_CONFIG, {**adapter_config, "base_model_name_or_path": base})
        if staged:
            (tmp / "training").mkdir()
            for name, path in staged.items():
                shutil.copyfile(path, tmp / "training" / name)
        write_json_atomic(tmp / "metrics.json", {"source": str(ckpt), "evaluations": summaries})
        if card_text is not None:
            (tmp / "README.md").write_text(card_text)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m timer1.tools.export", description=(
        "Copy a run's best checkpoint (a full model, or a LoRA adapter in PEFT's layout) into a "
        "self-contained model directory with its training configs, an evaluation summary and a model card."))
    parser.add_argument("source", help="a run directory (its best checkpoint is used) or a checkpoint directory")
    parser.add_argument("out", help="the model directory to (re)write, e.g. timer1/checkpoints/timer1-tiny")
    parser.add_argument("--stage", action="append", default=[], metavar="LABEL=RUN",
                        help="a training stage whose resolved config and metrics to include (repeatable)")
    parser.add_argument("--report", action="append", default=[], metavar="LABEL=REPORT.json",
                        help="an evaluate.py --out report to summarise in metrics.json (repeatable)")
    parser.add_argument("--card", metavar="README.md", help="the model card to include (may be the one in OUT)")
    parser.add_argument("--base", default="", metavar="NAME_OR_DIR",
                        help="for a LoRA run: the base model to record in adapter_config.json")
    args = parser.parse_args(argv)
    try:
        out = export(args.source, args.out, stages=_labelled(args.stage, "stage"),
                     reports=_labelled(args.report, "report"), card=args.card, base=args.base)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
