"""The combinations the judge is measured against, on the judge's own TRAINING and VALIDATION cases
(never the test windows): the learned softmax's coefficients are fitted on the training cases here,
and every rule is compared on the validation cases.

    python -m timer1.train.judge_data --out runs/judge_data      # the cases (minutes)
    python benchmarks/judge_ablation.py runs/judge_data [--judge runs/judge_sft --judge runs/judge_grip]

Printed: the fitted coefficients, then per case source (each dataset's validation region, synthetic)
the mean MASE (the series' one-step scale) of each combination: the rule (least backtest error), the
equal means of the best two and three, the learned softmax of the errors, each candidate alone, the
teacher's and the oracle's weights (they read the target: upper bounds), and each ``--judge`` model's
greedy judgement; a geometric mean over the sources last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timer1.core.combine import Outcome, fit_softmax, softmax_weights, top_mean_weights  # noqa: E402
from timer1.core.judge import combine, rule_weights  # noqa: E402
from timer1.core.judge_teacher import oracle_weights, teacher_weights  # noqa: E402
from timer1.train.judge_data import read_cases  # noqa: E402


def judge_weights(judge_dir: str, cases: list, samples: int, show: int) -> tuple[list[np.ndarray], int]:
    """Each case's weights by the judge (``samples`` judgements averaged; 1 = greedy) and how many
    cases fell back to the rule (no readable answer); ``show`` judgements printed in full."""
    from timer1.core.judge import judge_prompt
    from timer1.data.protocol import evenly_spaced
    from timer1.forecast.combination import judge_series
    from timer1.forecast.resolve import open_policy, resolve_judge

    policy = open_policy(resolve_judge(judge_dir), None, "cpu", None, None)
    judged = judge_series(policy, cases, samples=samples)
    for i in evenly_spaced(range(len(cases)), show) if show else []:
        case, j = cases[i], judged[i]
        score = {name: float(np.mean(np.abs(combine(case.forecasts, w) - case.target)))
                 for name, w in (("judge", j.weights), ("rule", rule_weights(case.evidence)))}
        print(f"\n--- validation case {i}\n{judge_prompt(case.evidence)}\n>>> {j.text}\n"
              f"weights: {j.source}; MAE judge {score['judge']:.4g}, rule {score['rule']:.4g}")
    return [j.weights for j in judged], sum(j.read == 0 for j in judged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path, help="a folder with train.jsonl and val.jsonl (timer1.train.judge_data)")
    parser.add_argument("--judge", action="append", default=[], help="a judge checkpoint or run to add (repeatable)")
    parser.add_argument("--samples", type=int, nargs="+", default=[8],
                        help="judgements averaged per case, each count a row (1 = one greedy answer)")
    parser.add_argument("--show", type=int, default=0, help="print this many judgements in full (prompt, answer)")
    args = parser.parse_args()
    train = read_cases(args.cases / "train.jsonl")
    coef = fit_softmax(outcomes(train))
    print(f"softmax coefficients fitted on {len(train)} training cases: {np.round(coef, 4).tolist()}")
    val = read_cases(args.cases / "val.jsonl")
    cases = [c for c, _ in val]
    methods = {"rule": [rule_weights(c.evidence) for c in cases],
               "top2": [top_mean_weights(c.evidence.errors, 2) for c in cases],
               "top3": [top_mean_weights(c.evidence.errors, 3) for c in cases],
               "softmax (learned)": [softmax_weights(c.evidence.errors, coef) for c in cases],
               "teacher (reads the target)": [teacher_weights(c) for c in cases],
               "oracle (reads the target)": [oracle_weights(c) for c in cases]}
    for judge in args.judge:
        for samples in args.samples:
            methods[f"judge {judge} x{samples}"], fell_back = judge_weights(judge, cases, samples, args.show)
            print(f"judge {judge} x{samples}: {fell_back} of {len(cases)} cases without a readable answer")
    sizes: dict[str, int] = {}
    for case in cases:
        sizes[case.evidence.step] = sizes.get(case.evidence.step, 0) + 1
    print(f"\n{len(cases)} validation cases; mean MASE by step (the seven datasets' validation regions are "
          "hourly, minutes, daily and index; the other steps are synthetic)\n")
    print("| method | " + " | ".join(f"{g} ({n})" for g, n in sizes.items()) + " | geometric mean |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name, weights in methods.items():
        geo, means = group_mase(val, weights)
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means.values()) + f" | {geo:.3f} |")


def outcomes(cases: list) -> list[Outcome]:
    """(case, scale) pairs as fit_softmax takes them, grouped by the evidence's step."""
    return [Outcome(c.evidence.errors, c.forecasts, c.target, scale, c.evidence.step) for c, scale in cases]


def group_mase(cases: list, weights: list) -> tuple[float, dict[str, float]]:
    """The geometric mean over the case groups (the evidence's step) of each group's mean MASE, and the
    group means in order of appearance: cases (case, scale) pairs, weights (K,) one per case."""
    groups: dict[str, list[float]] = {}
    for (case, scale), w in zip(cases, weights):
        groups.setdefault(case.evidence.step, []).append(np.mean(np.abs(combine(case.forecasts, w) - case.target)) / scale)
    means = {g: float(np.mean(v)) for g, v in groups.items()}
    return float(np.exp(np.mean(np.log(list(means.values()))))), means


if __name__ == "__main__":
    main()
