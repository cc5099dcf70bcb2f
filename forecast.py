"""Forecast a CSV with a timer1 (or any Hugging Face Qwen2) checkpoint, by slow thinking.

    python forecast.py series.csv                                  # last numeric column, 96 -> 96
    python forecast.py series.csv --column OT --horizon 48 --out fc.csv --plot fc.svg
    python forecast.py series.csv --column all --samples 16 --show-reasoning
    python forecast.py series.csv --model /path/Qwen2.5-7B-Instruct --adapter runs/grip/adapter
    python forecast.py series.csv --single-pass                    # one greedy draft, for comparison

The CSV has a date column first (ISO, ``2020/1/1 0:00``, a running number, ...) and one numeric
column per channel; gaps are interpolated, unparseable dates become a running index (with a
warning). For each channel the last ``--lookback`` rows are written into the checkpoint's prompt,
``--samples`` reasoning paths are drawn in one batched call, a critic drops the implausible ones
and the rest are aggregated (timer1.slow_think): the median is the forecast, the 0.1/0.5/0.9
quantiles of the drafts give the band. If no draft survives, seasonal naive is used and stderr
says so. Output CSV columns: ``date,forecast,q0.1,q0.5,q0.9``; with ``--column all`` a ``channel``
column comes first and the channels follow one another in blocks (long format). Dates continue the
input's step (hourly, daily, weekly, monthly, quarterly, yearly or running index).

Bad input (missing/empty file, header only, no numeric column, unknown column, too few rows, a
directory that is not a Qwen2 checkpoint, an adapter of another base model) gives one line
``error: ...`` on stderr and exit code 2; no output file is written then.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
import warnings
from pathlib import Path

EXIT_BAD_INPUT = 2
DEFAULT_MODEL = "checkpoints/timer1-tiny"
REPO_DIR = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python forecast.py",
        description="Forecast the next values of a CSV time series with a timer1 / Qwen2 checkpoint "
                    "(Time-R1 slow thinking: sample several reasoning paths, let a critic drop bad "
                    "drafts, aggregate the rest into a median forecast and a 10-90% band).",
        epilog="Output columns: date,forecast,q0.1,q0.5,q0.9 (with --column all: channel first, one "
               "block per channel). Errors: one line on stderr, exit code 2.")
    parser.add_argument("csv", type=Path, help="input CSV: a date column first, then numeric columns")
    parser.add_argument("--config", default=None, metavar="PRESET.toml",
                        help="a TOML preset of these options (keys like samples, max_new_tokens); "
                             "options given on the command line win")
    add_model_arguments(parser)
    parser.add_argument("--column", default=None, metavar="NAME|all",
                        help="channel to forecast, or 'all' (default: the last numeric column)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="steps to forecast (default 96; 36 for a file named nasdaq.csv, as in the paper)")
    parser.add_argument("--lookback", type=int, default=None,
                        help="history rows shown to the model (default 96; nasdaq 36)")
    parser.add_argument("--samples", type=int, default=8, help="reasoning paths drawn per round (default 8)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="draft rounds at most: redraw while fewer than half the drafts pass (default 2)")
    parser.add_argument("--refine", choices=("resample", "critique"), default="resample",
                        help="how a round with failed drafts is retried: fresh samples, or the critic's "
                             "findings sent back as a user turn (instruct models) (default resample)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0: off)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per answer (default: 256 + 4 per value for compact prompts, "
                             "16 per value for date/value tables)")
    parser.add_argument("--single-pass", action="store_true",
                        help="one greedy draft instead of slow thinking (no band: quantiles = forecast)")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="write the CSV here (atomically) instead of stdout")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH.svg",
                        help="also draw history, forecast and band as an SVG")
    parser.add_argument("--show-reasoning", action="store_true",
                        help="print every draft, the critic's findings and the kept reasoning to stderr")
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `resolve_model` and `open_policy` read; forecast.py and evaluate.py share them."""
    parser.add_argument("--model", default=None, metavar="DIR",
                        help=f"Qwen2 checkpoint directory or training run (default: $TIMER1_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter (PEFT layout) to apply")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: 1 for models under 50M parameters on CPU, "
                             "else torch's choice)")


def parse_with_preset(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv`` with ``--config PRESET.toml`` supplying defaults: flat TOML keys named like the
    options (``samples = 16``, ``max_new_tokens = 512`` or ``"max-new-tokens"``); the command line wins.
    An unreadable preset or an unknown key ends the run with one ``error:`` line (exit 2)."""
    import tomllib

    preset, _ = parser.parse_known_args(argv)
    if preset.config is not None:
        try:
            values = tomllib.loads(Path(preset.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            parser.exit(EXIT_BAD_INPUT, f"error: cannot read preset {preset.config}: {err}\n")
        known = {action.dest for action in parser._actions} - {"help", "config"}
        defaults = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(defaults) - known)
        if unknown:
            parser.exit(EXIT_BAD_INPUT, f"error: {preset.config}: unknown key {unknown[0]!r} "
                                        f"(known: {', '.join(sorted(known))})\n")
        parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_series(path: Path):
    """timer1.data.read_csv, with its warnings (unparseable dates, dropped columns) as one stderr line each."""
    from timer1.data import read_csv

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(path)
    for warning in caught:
        log(f"warning: {warning.message}")
    return series


def pick_channels(series, column: str | None) -> list[str]:
    if column is None:
        return [series.channels[-1]]
    if column == "all":
        return list(series.channels)
    if column not in series.channels:
        raise ValueError(f"{series.name}: no column {column!r}; numeric columns are {', '.join(series.channels)}")
    return [column]


def check_sizes(series, path: Path, lookback: int, horizon: int) -> None:
    if lookback < 1 or horizon < 1:
        raise ValueError(f"--lookback and --horizon must be positive, got {lookback} and {horizon}")
    if len(series) < lookback:
        raise ValueError(f"{path} has {len(series)} rows but --lookback {lookback} needs at least {lookback}; "
                         f"pass a smaller --lookback")


def resolve_model(model: str | None) -> Path:
    """--model as given; the default checkpoint is looked for in the working directory, then the repo."""
    if model is not None:
        return Path(model)
    default = os.environ.get("TIMER1_MODEL", DEFAULT_MODEL)
    for candidate in (Path(default), REPO_DIR / default):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no model at {default}; pass --model DIR (any Hugging Face Qwen2 directory)")


SMALL_MODEL_PARAMS = 50_000_000   # below this, CPU decoding defaults to one thread


def open_policy(model_dir: Path, adapter: str | None, device: str, dtype: str, threads: int | None = None):
    """load_policy, with any failure (not a Qwen2 directory, broken weights, foreign adapter) as one line."""
    import torch

    from timer1.policy import load_policy

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)

    try:
        policy = load_policy(model_dir, adapter=adapter, device=device, dtype=dtype)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(str(err)) from None
    except Exception as err:  # e.g. a corrupt safetensors header: still one line, naming the directory
        raise ValueError(f"cannot load a Qwen2 checkpoint from {model_dir}: {type(err).__name__}: {err}") from None
    if threads is None and next(policy.model.parameters()).device.type == "cpu" and \
            sum(p.numel() for p in policy.model.parameters()) < SMALL_MODEL_PARAMS:
        # a small model's decode step is per-op overhead, not arithmetic: one thread is as fast, and
        # several OpenMP threads spin-waiting against another busy process can be 40x slower
        # (measured: timer1-tiny on ETTh1, 7.8 s with 1 thread vs 314 s with 2 beside an evaluate.py)
        torch.set_num_threads(1)
    return policy


def check_output_paths(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and not path.parent.resolve().is_dir():
            raise FileNotFoundError(f"output directory does not exist: {path.parent}")


def format_number(value: float) -> str:
    return f"{float(value):.10g}"


def forecast_rows(channel: str, window, result, with_channel: bool) -> list[list[str]]:
    rows = []
    for k, date in enumerate(window.target_dates):
        cells = [date, format_number(result.point[k])] + [format_number(result.quantiles[q][k]) for q in (0.1, 0.5, 0.9)]
        rows.append(([channel] if with_channel else []) + cells)
    return rows


def write_csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def show_reasoning(channel: str, result) -> None:
    for k, draft in enumerate(result.drafts, start=1):
        verdict = "kept" if draft.passed else "dropped: " + "; ".join(draft.findings)
        log(f"--- {channel} draft {k} (round {draft.round}, {verdict})")
        log(draft.text.strip() or "(empty)")


def run(args) -> int:
    from timer1.data import forecast_window, protocol_for

    series = read_series(args.csv)
    channels = pick_channels(series, args.column)
    protocol = protocol_for(series.name)
    lookback = args.lookback or protocol.lookback
    horizon = args.horizon or protocol.horizon
    check_sizes(series, args.csv, lookback, horizon)
    check_output_paths(args.out, args.plot)
    if args.samples < 1 or args.rounds < 1:
        raise ValueError(f"--samples and --rounds must be at least 1, got {args.samples} and {args.rounds}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise ValueError(f"need --temperature >= 0 and 0 < --top-p <= 1, got {args.temperature} and {args.top_p}")

    model_dir = resolve_model(args.model)
    # torch comes in only now: every input error above is reported without paying for its import
    from timer1.slow_think import (SlowThinkConfig, default_max_new_tokens, period_for_step, single_pass,
                                   slow_think)

    started = time.perf_counter()
    policy = open_policy(model_dir, args.adapter, args.device, args.dtype, args.threads)
    log(f"loaded {model_dir} ({policy.prompt_format.style} prompts) on {policy.device} "
        f"in {time.perf_counter() - started:.1f} s")
    max_new = args.max_new_tokens or default_max_new_tokens(policy.prompt_format, horizon)
    config = SlowThinkConfig(samples=args.samples, rounds=args.rounds, refine=args.refine,
                             temperature=args.temperature, top_p=args.top_p, max_new_tokens=max_new, seed=args.seed)
    period = period_for_step(series.step)

    rows, panels = [], []
    for index, channel in enumerate(channels, start=1):
        window = forecast_window(series, channel, lookback, horizon)
        mode = "single pass" if args.single_pass else f"{args.samples} drafts"
        log(f"[{index}/{len(channels)}] {channel}: {lookback} -> {horizon} steps, {mode}")
        t0 = time.perf_counter()
        if args.single_pass:
            result = single_pass(policy, window, max_new_tokens=max_new, period=period)
        else:
            result = slow_think(policy, window, config, period=period, log=lambda m: log("    " + m))
        summary = f"kept {result.kept} of {result.kept + result.dropped} drafts"
        log(f"    {summary} in {time.perf_counter() - t0:.1f} s" + (f"; FALLBACK: {result.fallback}"
                                                                   if result.used_fallback else ""))
        if args.show_reasoning:
            show_reasoning(channel, result)
        rows += forecast_rows(channel, window, result, with_channel=args.column == "all")
        panels.append((channel, window, result))

    header = (["channel"] if args.column == "all" else []) + ["date", "forecast", "q0.1", "q0.5", "q0.9"]
    text = write_csv_text(header, rows)
    if args.plot is not None:
        write_plot(args.plot, series.name, panels)
    if args.out is not None:
        from timer1.atomic import write_text_atomic

        write_text_atomic(args.out, text, newline="")
        log(f"wrote {len(rows)} rows to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def write_plot(path: Path, name: str, panels) -> None:
    from timer1.plot import Panel, write_svg

    tail = 3  # show up to three horizons of history: enough context, the forecast stays readable
    drawn = []
    for channel, window, result in panels:
        keep = min(len(window.history), tail * window.horizon)
        drawn.append(Panel(f"{channel}", window.history_dates[-keep:], window.history[-keep:],
                           window.target_dates, result.point, result.quantiles[0.1], result.quantiles[0.9]))
    write_svg(path, drawn, title=f"{name}: timer1 forecast")
    log(f"wrote plot to {path}")


def run_reporting_errors(run, args) -> int:
    """``run(args)``, with bad input turned into one ``error:`` line and exit code 2 (no traceback)."""
    try:
        return run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        log(f"error: {err}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        log("error: interrupted")
        return 130


def main(argv=None) -> int:
    return run_reporting_errors(run, parse_with_preset(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
