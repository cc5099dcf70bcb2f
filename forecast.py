"""Forecast a CSV with a timer1 (or any Hugging Face Qwen2) checkpoint, by slow thinking.

    python forecast.py series.csv                                  # last numeric column, default horizon
    python forecast.py series.csv --column OT --horizon 48 --out fc.csv --plot fc.svg
    python forecast.py series.csv --column all --samples 16 --show-reasoning
    python forecast.py series.csv --model /path/Qwen2.5-7B-Instruct --adapter runs/grip/adapter
    python forecast.py series.csv --mode slow                      # the model's drafts only, for comparison
    python forecast.py series.csv --single-pass                    # one greedy draft (= --mode single)

The CSV has a date column first (ISO with or without a UTC offset, ``2020/1/1 0:00``, ``07/01/1950``,
a running number, ...) and one numeric column per channel; the delimiter (``, ; TAB |``), decimal
commas and the encoding are detected (timer1.data.csv_io.read_csv). What is fixed is said on stderr, one
line each: rows put in date order (newest first, or shuffled onto one step), steps missing from the
dates (the look-back is taken on the regular grid), cells that are empty or not numbers and isolated
outliers (interpolated; a look-back with more than MAX_REPAIRED_SHARE of them is refused). For each
series (``--mode auto``, the default) the statistical candidates (seasonal naive at the dates' periods,
last value, drift, Theta, a linear model, AutoETS, STL + AR) are backtested at rolling origins on the
series' own history, and the forecast is the equal mean of the three of least backtest error (or the
judge's weights, ``--judge``), with a band from that combination's backtest errors
(timer1.forecast.combination). ``--mode rule`` is the default of earlier versions: the model's
``--samples`` reasoning paths drawn in one batched call for the last ``--lookback`` steps, a critic
dropping the implausible ones (timer1.core.slow_think), then reflection on the history
(timer1.forecast.reflect) keeping the best statistical candidate or its blend with the model's
answer; ``--mode slow`` keeps the model's answer (its own backtest picks the drafts' median or the
greedy draft). A history too short for any backtest origin is answered as ``--mode rule`` answers it.
If no draft survives, seasonal naive is used and the ``source`` column says so.
Output CSV columns: ``date,forecast,q0.1,q0.5,q0.9,source`` (``--quantiles 0.05,0.5,0.95``: one column
per level, ``q0.05,q0.5,q0.95``); cells of levels other than 0.5 are empty when there is no band (fewer than two drafts kept, a single pass, a fallback); with ``--column all`` a ``channel``
column comes first and the channels follow one another in blocks (long format). Dates continue the
input's step (hourly, daily, weekly, monthly, quarterly, yearly or running index). A channel whose
whole history is non-negative (counts, prices) gets its forecast and band clipped at 0.

Bad input (missing/empty file, header only, no numeric column, unknown column, too few rows,
duplicated or unsortable dates, a zero or too long horizon, an output path that is an input, another
output, a directory, a device or unwritable, a directory that is not a Qwen2 checkpoint, weights that
give non-finite logits, an adapter of another base model) gives one line ``error: ...`` on stderr
and exit code 2; no output file is written then.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from timer1.data.repair import MAX_REPAIRED_SHARE, OUTLIER_MADS
from timer1.forecast.inputs import MIN_CONTEXT, parse_quantiles, quantile_column
from timer1.forecast.output import csv_text, forecast_rows, has_band, header
from timer1.forecast.resolve import (HORIZON_FACTOR, PAPER_HORIZON, add_model_arguments, default_horizon, horizon_cap,
                                     resolve_model)

EXIT_BAD_INPUT = 2
PROGRESS_AFTER = 3.0    # seconds of reading before progress is shown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python forecast.py",
        allow_abbrev=False,  # a prefix must not pass for an option: --mode is not --model
        description="Forecast the next values of a CSV time series with a timer1 / Qwen2 checkpoint "
                    "(Time-R1 slow thinking: sample several reasoning paths, let a critic drop bad "
                    "drafts, aggregate the rest into a median forecast and a 10-90% band).",
        epilog="Output columns: date,forecast,q0.1,q0.5,q0.9,source (one q column per --quantiles level; with "
               "--column all: channel first, one block per channel); source is the model, the statistical "
               "candidate or the fallback that answered; levels other than q0.5 are empty when "
               "there is no band (fewer than 2 drafts kept). When a channel's whole history is "
               "non-negative, the forecast and the band are clipped at 0. Missing or non-number cells, "
               f"missing date steps and isolated outliers (over {OUTLIER_MADS:g} MADs) in the look-back "
               f"are interpolated and reported; more than {MAX_REPAIRED_SHARE:.0%} of them is an error. "
               "Errors: one line on stderr, exit code 2.")
    parser.add_argument("csv", type=Path, help="input CSV: a date column first, then numeric columns ('-': "
                                               "standard input)")
    parser.add_argument("--config", default=None, metavar="PRESET.toml",
                        help="a TOML preset of these options (keys like samples, max_new_tokens); "
                             "options given on the command line win")
    add_model_arguments(parser)
    parser.add_argument("--column", default=None, metavar="NAME|all",
                        help="channel to forecast, or 'all' (default: the last numeric column)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="steps to forecast (default: two seasonal cycles of the step: 48 hourly, 14 daily, "
                             "104 weekly, 24 monthly, 8 quarterly, 10 yearly, else 96; the paper's horizon for "
                             "its datasets, e.g. 36 for nasdaq.csv). At most "
                             f"{HORIZON_FACTOR} times the horizon the model was trained for (its training/*.toml, "
                             f"else the paper's {PAPER_HORIZON})")
    parser.add_argument("--lookback", type=int, default=None,
                        help="history rows shown to the model (default 96, nasdaq 36, or every row of a shorter "
                             "CSV, as the Python API does; at least 8)")
    parser.add_argument("--samples", type=int, default=8, help="reasoning paths drawn per round (default 8)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="draft rounds at most: redraw while fewer than half the drafts pass (default 2)")
    parser.add_argument("--refine", choices=("resample", "critique"), default="resample",
                        help="how a round with failed drafts is retried: fresh samples, or the critic's "
                             "findings sent back as a user turn (instruct models) (default resample)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--backtest", action=argparse.BooleanOptionalAction, default=True,
                        help="also forecast the history's own last part and answer the way that did better "
                             "there: the drafts' median or the greedy draft (default on; --no-backtest: median)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0: off)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per answer (default: 256 + 4 per value for compact prompts, "
                             "16 per value for date/value tables)")
    parser.add_argument("--mode", choices=("auto", "rule", "slow", "single"), default="auto",
                        help="auto (default): the statistical candidates (seasonal naive, last value, drift, Theta, "
                             "linear, AutoETS, STL + AR) backtested on the series' own history, the equal mean of "
                             "the best three (or the judge's weights), with a band from its backtest errors; rule: "
                             "slow thinking, then the best statistical candidate or its blend with the model's "
                             "answer, whichever backtested better; slow: the model's drafts only; single: one "
                             "greedy draft")
    parser.add_argument("--single-pass", action="store_true", help="the same as --mode single")
    add_output_arguments(parser)
    add_long_arguments(parser)
    return parser


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantiles", default="0.1,0.5,0.9", metavar="LEVELS",
                        help="quantile levels to write, one column each named by level (q0.05, ...), e.g. "
                             "0.05,0.5,0.95 (default 0.1,0.5,0.9); the band is calibrated for each level")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="write the CSV here (atomically) instead of stdout")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH.svg",
                        help="also draw history, forecast and band as an SVG (the path must end in .svg); several "
                             "series are drawn side by side, a long CSV's first 12")
    parser.add_argument("--show-reasoning", action="store_true",
                        help="print every draft, the critic's findings and the kept reasoning to stderr")


def add_long_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-column", default=None, metavar="NAME",
                        help="read a long CSV (one row per series and time, as statsforecast's unique_id,ds,y): "
                             "every series is forecast in batched calls and written back long")
    parser.add_argument("--timestamp-column", default=None, metavar="NAME",
                        help="the date column (default: a long CSV's ds; a wide CSV's first column, or the first "
                             "later one whose cells are dates)")
    parser.add_argument("--target", default="y", metavar="NAME", help="long CSV: the values (default y)")
    parser.add_argument("--cross-validation", type=int, default=None, metavar="N",
                        help="instead of forecasting the future, forecast the last N windows of --horizon steps "
                             "from the values before each (rolling origin, statsforecast's layout: id, date, "
                             "cutoff, y, forecast, q<level>..., source); scores beside seasonal naive and last "
                             "value on stderr")
    parser.add_argument("--step-size", type=int, default=None, metavar="S",
                        help="--cross-validation: steps between window cutoffs (default: the horizon)")
    parser.add_argument("--skip-short", action="store_true",
                        help=f"long CSV: leave out series with fewer than {MIN_CONTEXT} values (said on stderr) "
                             "instead of stopping")


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


def is_first_rank() -> bool:
    """Rank 0, or the only process: under torchrun the others forecast their shard and stay quiet."""
    return os.environ.get("RANK", "0") == "0"


def log(message: str) -> None:
    if is_first_rank():
        print(message, file=sys.stderr, flush=True)


STDIN = "-"              # the CSV argument that means standard input
STDIN_NAME = "<stdin>"   # how messages name it


def input_name(path: Path) -> str:
    return STDIN_NAME if str(path) == STDIN else str(path)


def read_series(path: Path, columns: list[str] | None = None, notes: list[str] | None = None,
                date_column: str | None = None):
    """timer1.data.csv_io.read_csv, with its warnings (dialect, order, gaps, unparseable dates, dropped
    columns) as one stderr line each (appended to ``notes`` when given, to be shown once the run is
    sure to go on: a run that fails says one line), and progress on stderr once reading takes a few
    seconds. ``-`` is standard input: spooled to a temporary file (read_csv sniffs and streams a
    file), named ``<stdin>`` in every message."""
    if str(path) != STDIN:
        return _read_series(path, (columns, date_column), notes, str(path))
    with tempfile.TemporaryDirectory(prefix="timer1-stdin-") as folder:
        spooled = Path(folder) / "stdin.csv"
        with open(spooled, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        quiet: list[str] = []
        try:
            series = _read_series(spooled, (columns, date_column), quiet, STDIN_NAME)
        except (ValueError, OSError) as err:
            raise ValueError(str(err).replace(str(spooled), STDIN_NAME)) from None
    for note in quiet:
        (log if notes is None else notes.append)(note.replace(str(spooled), STDIN_NAME))
    return series


def _read_series(path: Path, columns: tuple[list[str] | None, str | None], notes: list[str] | None, label: str):
    """read_csv of ``columns`` = (the value columns or None for all, the date column or None to find it)."""
    from timer1.data.csv_io import read_csv

    started, shown = time.perf_counter(), [0.0]

    def progress(done: int, size: int) -> None:
        elapsed = time.perf_counter() - started
        if elapsed > PROGRESS_AFTER and elapsed - shown[0] > PROGRESS_AFTER:
            shown[0] = elapsed
            log(f"reading {label}: {done / max(size, 1):.0%} of {size / 1e6:.0f} MB ({elapsed:.0f} s)")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(path, columns=columns[0], progress=progress, date_column=columns[1])
    for warning in caught:
        (log if notes is None else notes.append)(f"warning: {warning.message}")
    return series


def pick_channels(series, column: str | None) -> list[str]:
    if column is None:
        return [series.channels[-1]]
    if column == "all":
        return list(series.channels)
    if column not in series.channels:
        raise ValueError(f"{series.name}: no column {column!r}; numeric columns are {', '.join(series.channels)}")
    return [column]


def choose_sizes(args, series, limit: int, notes: list[str]) -> tuple[int, int]:
    """(lookback, horizon): given ones checked, defaults from the step; the horizon capped at ``limit``
    (timer1.forecast.resolve.horizon_cap)."""
    from timer1.data.protocol import protocol_for

    if args.horizon is not None and args.horizon < 1:
        raise ValueError(f"--horizon must be a positive number of steps, got {args.horizon}")
    if args.lookback is not None and args.lookback < MIN_CONTEXT:
        raise ValueError(f"--lookback must be at least {MIN_CONTEXT} rows (fewer show no level, step or cycle "
                         f"to check a forecast against), got {args.lookback}")
    if args.horizon is not None and args.horizon > limit:
        raise ValueError(f"--horizon {args.horizon} is more than {limit} steps, {HORIZON_FACTOR} times the "
                         f"{limit // HORIZON_FACTOR} this model was trained for; forecast in shorter pieces")
    horizon = args.horizon or min(default_horizon(series), limit)
    if args.horizon is None:
        notes.append(f"horizon {horizon} steps (default for {series.step.name} data; --horizon to change)")
    default = protocol_for(series.name).lookback
    if len(series) < MIN_CONTEXT:
        raise ValueError(f"{input_name(args.csv)} has {len(series)} rows; at least {MIN_CONTEXT} are needed")
    lookback = args.lookback or min(default, len(series))
    if args.lookback is None and lookback < default:
        notes.append(f"look-back {lookback} rows: all the CSV has (the default is {default}; --lookback to change)")
    if len(series) < lookback:
        raise ValueError(f"{input_name(args.csv)} has {len(series)} rows but --lookback {lookback} needs at least "
                         f"{lookback}; pass a smaller --lookback")
    return lookback, horizon


def check_output_paths(args) -> None:
    """Before anything runs: --plot ends in .svg; each output is writable (timer1.util.atomic.check_writable:
    a regular file or a new name, never a directory, FIFO or device) and resolves (symlinks and hard
    links followed) to neither an input nor the other output."""
    from timer1.util.atomic import check_writable

    taken = [(Path(os.path.realpath(p)), f"the input {p}") for p in (args.csv, args.config)
             if p is not None and str(p) != STDIN]
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path is None:
            continue
        if option == "--plot" and path.suffix.lower() != ".svg":
            raise ValueError(f"--plot {path}: the plot is an SVG; give a path ending in .svg")
        target = check_writable(path)
        for other, what in taken:
            if other == target or (other.exists() and target.exists() and os.path.samefile(other, target)):
                raise ValueError(f"{option} {path} is {what}; refusing to overwrite it")
        taken.append((target, f"{option} {path}"))


def show_reasoning(channel: str, result) -> None:
    for k, draft in enumerate(result.drafts, start=1):
        verdict = "kept" if draft.passed else "dropped: " + "; ".join(draft.findings)
        log(f"--- {channel} draft {k} (round {draft.round}, {verdict})")
        log(draft.text.strip() or "(empty)")


def run_long(args) -> int:
    """``--id-column``: every series of a long CSV through one `Forecaster.predict` call (batched), the
    answer long: id, date, forecast, q<level> per --quantiles level, source (timer1.data.long_csv)."""
    from timer1.data.long_csv import LongColumns, read_long

    if args.column is not None:
        raise ValueError("--column is for wide CSVs; a long CSV (--id-column) forecasts every series")
    from timer1.forecast.combination import tally_key
    from timer1.forecast.forecaster import DEFAULT_LOOKBACK, Forecaster
    from timer1.util.progress import ProgressLine

    columns = LongColumns(args.id_column, args.timestamp_column or LongColumns.timestamp, args.target)
    series = long_series(args, read_long(args.csv, columns))
    indexed = series[0].indexed   # one kind for all (read_long checks)
    started = time.perf_counter()
    forecaster = Forecaster.from_pretrained(args.model, args.adapter, args.device, args.dtype, threads=args.threads,
                                            judge=args.judge,
                                            config=slow_config(args), max_new_tokens=args.max_new_tokens,
                                            lookback=args.lookback or DEFAULT_LOOKBACK)
    log(f"loaded {forecaster.name} in {time.perf_counter() - started:.1f} s; {len(series)} series in {args.csv}"
        + sharing())
    started, rows, drawn, sources = time.perf_counter(), {}, {}, Counter()
    line = ProgressLine("forecasting", len(series))
    groups = forecaster.predict_groups([s.values for s in series], args.horizon, seed=args.seed, quantiles=args.levels,
                                       mode="single" if args.single_pass else args.mode,
                                       timestamps=None if indexed else [s.dates for s in series],
                                       progress=lambda done, _: line.update(done))
    line.close()
    for members, out in groups:
        steps = out.point.shape[1]
        for k, i in enumerate(members):
            s = series[i]
            future = s.next_index(steps) if indexed else out.timestamps[k]
            if out.repairs[k].count:
                log(f"warning: {s.id}: {out.repairs[k].describe(min(len(s.values), forecaster.lookback))}")
            rows[i] = forecast_rows([s.id], future, out, k)
            drawn[i] = ((s.id, s.dates, s.values, future), out, k)
        sources.update(tally_key(source) for source in out.source)
    log(f"{len(series)} series x " + " or ".join(str(out.point.shape[1]) for _, out in groups)
        + f" steps in {time.perf_counter() - started:.1f} s; answered by "
        + ", ".join(f"{name} {n}" for name, n in sources.most_common()))
    if args.plot is not None:
        write_plot(args.plot, args.csv.name, [drawn[i] for i in sorted(drawn)])
    table = [row for i in sorted(rows) for row in rows[i]]
    return emit(args, csv_text(header([columns.id, columns.timestamp], args.levels), table), len(table))


def long_series(args, series: list) -> list:
    """The series of a long CSV to forecast: one shorter than MIN_CONTEXT values is an error naming it,
    or, with --skip-short, left out with one warning line."""
    short = [s.id for s in series if len(s.values) < MIN_CONTEXT]
    if short and not args.skip_short:
        raise ValueError(f"{input_name(args.csv)}: series {short[0]!r} has fewer than {MIN_CONTEXT} values "
                         f"({len(short)} series do); pass --skip-short to forecast the others")
    if short:
        log(f"warning: skipped {len(short)} series with fewer than {MIN_CONTEXT} values: " + ", ".join(short[:5])
            + (f" and {len(short) - 5} more" if len(short) > 5 else ""))
    kept = [s for s in series if len(s.values) >= MIN_CONTEXT]
    if not kept:
        raise ValueError(f"{input_name(args.csv)}: every series has fewer than {MIN_CONTEXT} values")
    return kept


def run_cross_validation(args) -> int:
    """``--cross-validation N``: the last N windows of ``--horizon`` steps (``--step-size`` apart) of every
    series (a long CSV's, or the --column channels of a wide one), each forecast from the values up to
    its cutoff (timer1.forecast.cross_validation); the table written as CSV, the scores on stderr."""
    from timer1.forecast.cross_validation import Folds, cross_validate, summary
    from timer1.forecast.forecaster import DEFAULT_LOOKBACK, Forecaster

    if args.id_column is not None:
        from timer1.data.long_csv import LongColumns, read_long

        columns = LongColumns(args.id_column, args.timestamp_column or LongColumns.timestamp, args.target)
        found = read_long(args.csv, columns)
        series = ([s.id for s in found], [s.values for s in found], [s.dates for s in found], not found[0].indexed)
        names = (columns.id, columns.timestamp)
    else:
        wide = read_series(args.csv, None if args.column in (None, "all") else [args.column], None,
                           args.timestamp_column)
        channels = pick_channels(wide, args.column)
        series = (channels, [wide.column(c) for c in channels], [list(wide.dates)] * len(channels),
                  wide.timestamps is not None)
        names = ("channel", "date")
    forecaster = Forecaster.from_pretrained(args.model, args.adapter, args.device, args.dtype, threads=args.threads,
                                            judge=args.judge,
                                            config=slow_config(args), max_new_tokens=args.max_new_tokens,
                                            lookback=args.lookback or DEFAULT_LOOKBACK)
    horizon = args.horizon or forecaster.default_horizon(series[1][0], series[2][0] if series[3] else None)
    folds = Folds(horizon, args.cross_validation, args.step_size)
    mode = "single" if args.single_pass else args.mode
    log(f"cross-validation: {len(series[0])} series x {folds.n_windows} windows of {horizon} steps, "
        f"{folds.step_size or horizon} apart, mode {mode}")
    cv = cross_validate(forecaster, series, folds, names, quantiles=args.levels, mode=mode, seed=args.seed)
    for line in summary(cv, f"timer1 ({mode})", args.levels):
        log("    " + line)
    header = [*names, "cutoff", "y", "forecast", *(quantile_column(q) for q in args.levels), "source"]
    return emit(args, csv_text(header, cv.csv_rows()), len(cv.columns["y"]))


def sharing() -> str:
    """How the work is shared: ", sharded over N processes" under torchrun (the Forecaster joined the
    group on loading), else nothing."""
    dist = sys.modules.get("timer1.util.dist")
    world = 1 if dist is None else dist.world_size()
    return f", sharded over {world} processes" if world > 1 else ""


def slow_config(args):
    """The slow-thinking settings the options give (torch comes in here: input errors come first)."""
    from timer1.core.slow_think import SlowThinkConfig

    return SlowThinkConfig(samples=args.samples, rounds=args.rounds, refine=args.refine,
                           temperature=args.temperature, top_p=args.top_p, backtest=args.backtest, seed=args.seed)


def check_options(args) -> None:
    if args.samples < 1 or args.rounds < 1:
        raise ValueError(f"--samples and --rounds must be at least 1, got {args.samples} and {args.rounds}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise ValueError(f"need --temperature >= 0 and 0 < --top-p <= 1, got {args.temperature} and {args.top_p}")
    args.levels = parse_quantiles(args.quantiles)
    check_output_paths(args)


def emit(args, text: str, rows: int) -> int:
    """The CSV to ``--out`` (atomically) or to stdout; under torchrun rank 0 writes it."""
    if not is_first_rank():
        return 0
    if args.out is not None:
        from timer1.util.atomic import write_text_atomic

        write_text_atomic(args.out, text, newline="")
        log(f"wrote {rows} rows to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def run(args) -> int:
    check_options(args)
    if args.cross_validation is not None:
        return run_cross_validation(args)
    if args.id_column is not None:
        return run_long(args)
    notes: list[str] = []  # what was fixed or chosen: shown once nothing can fail before the forecast
    series = read_series(args.csv, None if args.column in (None, "all") else [args.column], notes,
                         args.timestamp_column)
    channels = pick_channels(series, args.column)
    started = time.perf_counter()   # resolving may convert a base model once (timer1-smol): loading time too
    model_dir, adapter_dir = resolve_model(args.model, args.adapter)
    resolving = time.perf_counter() - started
    limit = horizon_cap(model_dir, adapter_dir)
    lookback, horizon = choose_sizes(args, series, limit, notes)
    windows = prepare_windows(series, channels, lookback, horizon, notes)

    # torch comes in only now: every input error above is reported without paying for its import
    from timer1.core.baselines import period_for_step
    from timer1.forecast.forecaster import Forecaster, WindowHints, whole_history

    config = slow_config(args)
    started = time.perf_counter()
    forecaster = Forecaster.from_pretrained(model_dir, adapter_dir, args.device, args.dtype, threads=args.threads,
                                            judge=args.judge,
                                            config=config, max_new_tokens=args.max_new_tokens)
    dtype = str(forecaster.policy.model.lm_head.weight.dtype).removeprefix("torch.")
    log(f"loaded {forecaster.name} ({forecaster.policy.prompt_format.style} prompts) "
        f"on {forecaster.device} ({dtype}) in {resolving + time.perf_counter() - started:.1f} s" + sharing())
    for note in notes:
        log(note)
    mode = "single" if args.single_pass else args.mode
    full = [whole_history(series, c, w) for c, w in zip(channels, windows)]
    for index, (channel, whole) in enumerate(zip(channels, full), start=1):
        log(f"[{index}/{len(channels)}] {channel}: " + planned(mode, args, lookback, horizon, len(whole.history),
                                                               forecaster.judge is not None))
    started = time.perf_counter()
    nonnegative = [not (series.column(c) < 0).any() for c in channels]  # NaN cells compare False: not counted
    hints = WindowHints([args.seed] * len(windows), period_for_step(series.step), nonnegative, full=full,
                        steps=[series.step.name] * len(windows))
    forecast = forecaster.forecast_windows(windows, mode=mode, quantiles=args.levels, hints=hints,
                                           log=lambda m: log("    " + m))
    seconds = time.perf_counter() - started
    rows = []
    for i, (channel, window) in enumerate(zip(channels, windows)):
        report_channel(channel, window, forecast.results[i], forecast.clipped[i], seconds, args)
        rows += forecast_rows([channel] if args.column == "all" else [], window.target_dates, forecast, i)
    first = ["channel", "date"] if args.column == "all" else ["date"]
    text = csv_text(header(first, args.levels), rows)
    if args.plot is not None:
        write_plot(args.plot, series.name, [((c, f.history_dates, f.history, w.target_dates), forecast, i)
                                            for i, (c, f, w) in enumerate(zip(channels, full, windows))])
    return emit(args, text, len(rows))


def prepare_windows(series, channels: list[str], lookback: int, horizon: int, notes: list[str]) -> list:
    """One forecast window per channel, before the model loads (a refused look-back fails fast);
    what was repaired in each is one line of ``notes``."""
    from timer1.data.repair import forecast_window

    windows = []
    for channel in channels:
        window, repairs = forecast_window(series, channel, lookback, horizon)
        if repairs.count:
            notes.append(f"warning: {channel}: {repairs.describe(lookback)}")
        windows.append(window)
    return windows


def planned(mode: str, args, lookback: int, horizon: int, known: int, judged: bool) -> str:
    """What a channel's forecast will do, for its opening stderr line."""
    if mode == "auto":
        weighing = "weighed by the judge" if judged else "weighed by the learned softmax of their errors"
        return f"{horizon} steps; the candidates backtested on its {known} values, {weighing}"
    drafts = "single pass" if mode == "single" else f"{args.samples} drafts"
    return f"{lookback} -> {horizon} steps, {drafts}" + (", then reflection on the history" if mode == "rule" else "")


def report_channel(channel: str, window, result, clipped: bool, seconds: float, args) -> None:
    """One channel's summary on stderr: the combination, or the drafts kept, fallback, band, backtest;
    the clip (``seconds``: the whole batch)."""
    from timer1.forecast.combination import is_combination

    if is_combination(result):
        band = "band from its backtest errors" if has_band(result) else "no band (too few backtest errors)"
        log(f"    {channel}: {result.source} in {seconds:.1f} s; {band}")
    else:
        report_drafts(channel, window, result, seconds, args)
    if clipped:
        log(f"    clipped at 0: the history of {channel} is never negative")
    if args.show_reasoning:
        show_reasoning(channel, result)


def report_drafts(channel: str, window, result, seconds: float, args) -> None:
    """The summary of an answer the model drafted: drafts kept, fallback, band, backtest."""
    band = "" if has_band(result) else "; no band (fewer than 2 drafts kept): levels other than q0.5 left empty"
    if has_band(result) and result.answer.startswith("reflection"):
        own = result.band == "backtest errors"
        band = "; band from its backtest errors" if own else "; band: the drafts' spread (too little history)"
    mode = "single" if args.single_pass else args.mode
    backtest = (reflection_note(result) if mode in ("auto", "rule") else
                backtest_note(result, window) if args.backtest and mode == "slow" else "")
    log(f"    {channel}: kept {result.kept} of {result.kept + result.dropped} drafts in {seconds:.1f} s"
        + (f"; FALLBACK: {result.fallback}" if result.used_fallback else "") + band + backtest)


def reflection_note(result) -> str:
    """What reflection chose and why, e.g. "; reflection chose linear + model (backtest MAE: linear + model
    1.8, linear 1.9, model 2.1)": on the model's origins, the best statistical candidate over the
    history, its blend with the model, and the model alone (timer1.forecast.reflect)."""
    if not result.backtest_mae:
        return "; no reflection: the history is too short for a backtest"
    chosen = result.answer.removeprefix("reflection: ")
    ranked = sorted(result.backtest_mae.items(), key=lambda kv: kv[1])
    return (f"; reflection chose {chosen} (backtest MAE: "
            + ", ".join(f"{name} {error:.4g}" for name, error in ranked) + ")")


def backtest_note(result, window) -> str:
    """What the backtest decided, e.g. "; answer: greedy draft (backtest MAE 0.41 vs median 0.52)",
    or why there was none."""
    from timer1.core.slow_think import MIN_BACKTEST, backtest_window

    if result.used_fallback:   # the fallback is the answer: what the backtest preferred did not stand
        return ""
    if result.backtest_mae is None:
        if backtest_window(window) is None:
            return (f"; no backtest: a look-back of {len(window.history)} and a horizon of {window.horizon} "
                    f"leave fewer than {MIN_BACKTEST} values on a side of the history's cut")
        return ""
    other = "median" if result.answer == "greedy" else "greedy"
    name = "greedy draft" if result.answer == "greedy" else "median of the drafts"
    return (f"; answer: {name} (backtest MAE {result.backtest_mae[result.answer]:.4g} vs "
            f"{other} {result.backtest_mae[other]:.4g})")


MAX_PANELS = 12   # series drawn by --plot; a long CSV of hundreds gets its first twelve


def write_plot(path: Path, title: str, panels: list[tuple]) -> None:
    """Each series' history tail, forecast and band (small multiples for several; timer1.tools.plot):
    ``panels`` holds per series ((name, dates, values, future dates), its Forecast, its row there); the
    band lies between the lowest and highest requested quantile levels."""
    from timer1.tools.plot import Panel, write_svg

    if not is_first_rank():
        return
    tail = 3  # show up to three horizons of history: enough context, the forecast stays readable
    low, high = min(panels[0][1].quantiles), max(panels[0][1].quantiles)
    drawn = []
    for (name, dates, values, future), forecast, i in panels[:MAX_PANELS]:
        keep = min(len(values), tail * len(future))
        band = has_band(forecast.results[i]) and low < high
        drawn.append(Panel(str(name), list(dates)[-keep:], values[-keep:], future, forecast.point[i],
                           forecast.quantiles[low][i] if band else None, forecast.quantiles[high][i] if band else None))
    write_svg(path, drawn, title=f"{title}: timer1 forecast", band=f"{100 * low:g}-{100 * high:g}% band")
    shown = "" if len(panels) <= MAX_PANELS else f" (the first {MAX_PANELS} of {len(panels)} series)"
    log(f"wrote plot to {path}{shown}")


def run_reporting_errors(run, args) -> int:
    """``run(args)``, with bad input turned into one ``error:`` line and exit code 2 (no traceback), and
    each warning one ``warning:`` line."""
    from timer1.util.cli import show_warnings_as_lines

    show_warnings_as_lines(enabled=is_first_rank())
    try:
        code = run(args)
        leave_process_group()
        return code
    except (ValueError, FileNotFoundError, OSError) as err:
        log(f"error: {err}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        log("error: interrupted")
        return 130


def leave_process_group() -> None:
    """Under torchrun (the Forecaster joined the group to shard its windows): wait for every rank, then
    leave, so no rank tears connections down under a peer still in its last collective."""
    dist = sys.modules.get("timer1.util.dist")   # imported only if a model was loaded
    if dist is not None and dist.world_size() > 1:
        dist.barrier()
        dist.cleanup()


def main(argv=None) -> int:
    return run_reporting_errors(run, parse_with_preset(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
