"""SFT samples as a JSONL file: build them from the train regions with any teacher (paper Algorithm 1,
timer1.core.sft_data), write them, and read them back for ``train_sft.py --data.sft_jsonl=...``::

    python -m timer1.train.sft_jsonl --config configs/demo_sft.toml --out data/demo_sft.jsonl
    python -m timer1.train.sft_jsonl --config configs/sft_qwen2.5_7b.toml --out data/sft_etth1.jsonl \\
        --teacher=model --teacher_path=/models/DeepSeek-R1-Distill-Qwen-7B --teacher_k=3
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from timer1.core.codec import PromptFormat
from timer1.core.sft_data import ModelTeacher, SFTSample, StatisticalTeacher, Teacher, build_samples
from timer1.data.csv_io import read_csv
from timer1.data.protocol import split_bounds
from timer1.data.window_sets import WindowSpec
from timer1.train.checkpoint import resolve_checkpoint
from timer1.util.atomic import write_text_atomic
from timer1.util.cli import show_warnings_as_lines


def train_values(spec: WindowSpec) -> dict[tuple[str, str], np.ndarray]:
    """(dataset, channel) -> the channel's train-region values, for fitting the linear candidate."""
    out = {}
    for name in spec.datasets:
        series = read_csv(Path(spec.data_dir) / f"{name}.csv")
        train_end, _ = split_bounds(series, name)
        channels = [c for c in spec.channels if c in series.channels] or list(series.channels)
        for channel in channels:
            out[(name, channel)] = np.asarray(series.column(channel)[:train_end], dtype=np.float64)
    return out


def write_jsonl(samples: Sequence[SFTSample], path: str | os.PathLike) -> Path:
    """One JSON object per line, written to a temp file beside `path` and renamed."""
    lines = "".join(json.dumps(sample.to_json(), ensure_ascii=False) + "\n" for sample in samples)
    return write_text_atomic(path, lines)


def read_jsonl(path: str | os.PathLike, prompt_style: Optional[str] = None) -> list[dict]:
    """SFT records from a JSONL file: each needs ``prompt`` (chat messages or a string) and a
    non-empty ``completion``. Invalid lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    records, bad = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if _valid_record(record):
                records.append(record)
            else:
                bad += 1
    if not records:
        raise ValueError(f"{path} holds no valid SFT samples ({bad} invalid lines); "
                         "each line needs a 'prompt' (messages or text) and a non-empty 'completion'")
    styles = {r.get("prompt_style") for r in records} - {None}
    if prompt_style is not None and styles and styles != {prompt_style}:
        raise ValueError(f"{path} was written for prompt style {', '.join(sorted(styles))}, "
                         f"the run uses {prompt_style} (set data.prompt_style to match)")
    return records


def _valid_record(record) -> bool:
    if not isinstance(record, dict):
        return False
    prompt, completion = record.get("prompt"), record.get("completion")
    if not isinstance(completion, str) or not completion.strip():
        return False
    if isinstance(prompt, str):
        return bool(prompt.strip())
    return (isinstance(prompt, list) and len(prompt) > 0 and
            all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in prompt))


def make_teacher(cfg, fmt: PromptFormat, spec: WindowSpec, device=None) -> tuple[Teacher, Optional[Teacher]]:
    """(teacher, fallback) an SFTConfig asks for: the statistical teacher alone, or a model teacher
    with the statistical one as its fallback."""
    verbosity = cfg.reasoning if cfg.reasoning != "auto" else ("short" if fmt.style == "compact" else "long")
    statistical = StatisticalTeacher(fmt, verbosity, train_values(spec))
    if cfg.teacher == "statistical":
        return statistical, None
    if not cfg.teacher_path:
        raise ValueError("teacher = 'model' needs --teacher_path=<Qwen2 checkpoint directory>")
    return ModelTeacher.from_path(resolve_checkpoint(cfg.teacher_path), fmt, device=device, seed=cfg.seed,
                                  max_new_tokens=cfg.teacher_max_tokens), statistical


def main(argv: Optional[list[str]] = None) -> int:
    from timer1.core.codec import prompt_format_from
    from timer1.data.window_sets import load_windows, window_spec_from
    from timer1.train.config import ConfigError, SFTConfig, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    show_warnings_as_lines()
    out, rest, i = None, [], 0
    while i < len(argv):                                 # --out is ours; the rest is the SFT config
        arg = argv[i]
        if arg.startswith("--out="):
            out = arg.split("=", 1)[1]
        elif arg == "--out" and i + 1 < len(argv):
            out, i = argv[i + 1], i + 1
        else:
            rest.append(arg)
        i += 1
    try:
        cfg = load_config(SFTConfig, rest, "Build SFT samples (paper Algorithm 1) from the train region. "
                                           "Also needs --out PATH.jsonl.")
        if not out:
            raise ConfigError("missing --out PATH.jsonl")
        fmt, spec = prompt_format_from(cfg.data), window_spec_from(cfg.data)
        windows = load_windows(spec, "train", seed=cfg.seed)
        teacher, fallback = make_teacher(cfg, fmt, spec)
        samples, counts = build_samples(windows, teacher, fmt, cfg.teacher_k, fallback)
        if not samples:
            raise ValueError(f"no SFT sample could be built from {len(windows)} windows ({counts})")
        write_jsonl(samples, out)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    methods = Counter(sample.method for sample in samples)
    print(f"wrote {len(samples)} samples to {out} ({counts}); methods: "
          + ", ".join(f"{m} {n}" for m, n in sorted(methods.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
