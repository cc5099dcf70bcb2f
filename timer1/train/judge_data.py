"""The judge's training and validation cases as JSONL: build them once, train SFT and GRIP on them.

    python -m timer1.train.judge_data --out data/judge                 # train.jsonl, val.jsonl
    python -m timer1.train.judge_data --out data/judge --per-dataset 400 --synthetic 3000

Training cases: origins in the train regions of the seven datasets (every value before an origin is
its history, timer1.data.judge_windows) and varied synthetic series (timer1.data.varied_synthetic);
validation cases: origins in the validation regions and synthetic series of other seeds. Never the
test regions, never the public series outside the seven that the judge is checked on. Each line
holds the prompt, the teacher's completion (timer1.core.judge_teacher, paper Algorithm 1) and the
case itself (evidence, the candidates' forecasts, the target, the MASE scale), so GRIP's reward and
every combination can be computed from the file without a backtest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from timer1.core.backtest import Problem
from timer1.core.evidence import Evidence, scale_of
from timer1.core.judge import JudgeCase, build_cases
from timer1.core.judge_teacher import teacher_sample
from timer1.data.csv_io import read_csv
from timer1.data.judge_windows import judge_windows
from timer1.data.protocol import protocol_for
from timer1.data.varied_synthetic import varied_series
from timer1.util.atomic import write_text_atomic

DATASETS = ("ETTh1", "ETTh2", "exchange", "aqwan", "aqshunyi", "wind", "nasdaq")
BATCH = 64                # cases backtested together (ETS fits amortize over a batch)
VAL_SEED_OFFSET = 10**6   # synthetic validation series use seeds from here on, training ones below


def case_to_json(case: JudgeCase, scale: float) -> dict:
    """A case as JSON: the evidence's fields, forecasts (K, H), target (H,), and the MASE scale."""
    e = case.evidence
    return {"evidence": {"step": e.step, "length": e.length, "horizon": e.horizon, "origins": e.origins,
                         "seasonality": [[m, s] for m, s in e.seasonality], "trend": e.trend, "shift": e.shift,
                         "names": e.names, "errors": e.errors.tolist()},
            "forecasts": case.forecasts.tolist(), "target": case.target.tolist(), "scale": scale}


def case_from_json(record: dict) -> tuple[JudgeCase, float]:
    """(case, MASE scale) from ``case_to_json``'s record."""
    e = record["evidence"]
    evidence = Evidence(e["step"], e["length"], e["horizon"], e["origins"], [tuple(p) for p in e["seasonality"]],
                        e["trend"], e["shift"], list(e["names"]), np.asarray(e["errors"], dtype=np.float64))
    return (JudgeCase(evidence, np.asarray(record["forecasts"], dtype=np.float64),
                      np.asarray(record["target"], dtype=np.float64)), float(record["scale"]))


def read_records(path: str | Path) -> list[dict]:
    """Every record (one JSON object a line) of a judge JSONL file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_cases(path: str | Path) -> list[tuple[JudgeCase, float]]:
    """Every (case, scale) of a judge JSONL file."""
    return [case_from_json(record["case"]) for record in read_records(path)]


def dataset_problems(data_dir: Path, region: str, per_dataset: int) -> list[tuple[Problem, str, np.ndarray]]:
    """(problem, step name, target) of up to ``per_dataset`` origins per dataset, spread evenly over
    its channels and the region, horizons as the paper's protocol sets them (a target with a gap is
    skipped)."""
    out = []
    for name in DATASETS:
        series = read_csv(data_dir / f"{name}.csv")
        horizon = protocol_for(name).horizon
        found = judge_windows(series, name, region, horizon, max(1, horizon // 2), limit=per_dataset)
        out += [(w.problem(), w.step, w.window.target) for w in found if np.isfinite(w.window.target).all()]
    return out


def synthetic_problems(count: int, first_seed: int) -> list[tuple[Problem, str, np.ndarray]]:
    out = []
    for seed in range(first_seed, first_seed + count):
        s = varied_series(seed)
        out.append((Problem(s.history, len(s.target), s.period), s.step, s.target))
    return out


def build_records(problems: list[tuple[Problem, str, np.ndarray]], log=print) -> list[dict]:
    """The JSONL records of ``problems`` (those with a backtest origin), backtested BATCH at a time."""
    records, t0 = [], time.perf_counter()
    for start in range(0, len(problems), BATCH):
        chunk = problems[start:start + BATCH]
        cases = build_cases([p for p, _, _ in chunk], [s for _, s, _ in chunk], [y for _, _, y in chunk])
        for (problem, _, _), case in zip(chunk, cases):
            if case is not None:
                sample = teacher_sample(case)
                records.append({"prompt": sample.prompt, "completion": sample.completion,
                                "case": case_to_json(case, scale_of(problem.history))})
        log(f"  {min(start + BATCH, len(problems))}/{len(problems)} cases, {time.perf_counter() - t0:.0f} s")
    return records


def write_records(records: list[dict], path: Path) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def rewritten(path: Path) -> list[dict]:
    """The records of ``path`` with prompts and teacher completions written anew from the stored
    cases (after a change to the prompt or the teacher: no backtest is rerun)."""
    out = []
    for record in read_records(path):
        case, _ = case_from_json(record["case"])
        sample = teacher_sample(case)
        out.append({**record, "prompt": sample.prompt, "completion": sample.completion})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of the seven datasets")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and val.jsonl")
    parser.add_argument("--per-dataset", type=int, default=200, help="training origins per dataset")
    parser.add_argument("--synthetic", type=int, default=1500, help="synthetic training series")
    parser.add_argument("--val-per-dataset", type=int, default=30, help="validation origins per dataset")
    parser.add_argument("--val-synthetic", type=int, default=150, help="synthetic validation series")
    parser.add_argument("--rewrite", action="store_true",
                        help="rewrite the prompts and completions of the cases already in --out (no backtest)")
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.rewrite:
        for region in ("val", "train"):
            write_records(rewritten(args.out / f"{region}.jsonl"), args.out / f"{region}.jsonl")
            log(f"{region}: rewritten in place")
        return
    for region, per, synthetic, seed in (("val", args.val_per_dataset, args.val_synthetic, VAL_SEED_OFFSET),
                                         ("train", args.per_dataset, args.synthetic, 0)):
        log(f"{region}: backtesting...")
        problems = dataset_problems(args.data, region, per) + synthetic_problems(synthetic, seed)
        records = build_records(problems, log)
        write_records(records, args.out / f"{region}.jsonl")
        log(f"{region}: {len(records)} cases -> {args.out / f'{region}.jsonl'}")


if __name__ == "__main__":
    main()
