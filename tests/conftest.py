"""Shared test fixtures: the real datasets live beside the repo in ../shared/data (never copied in)."""

import importlib.util
import os
from pathlib import Path

# The suite is CPU-only (its expectations are fp32 CPU numbers): on a GPU machine "auto" would pick
# CUDA in bf16, and 12 xdist workers sharing one GPU made bit-equality tests flaky and the suite
# slow. Hidden before torch initialises CUDA; subprocesses inherit it. GPU checks live in
# benchmarks/gpu_check.py.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path of the seven real datasets; the suite needs them, so their absence is an error."""
    if not (SHARED_DATA / "ETTh1.csv").exists():
        raise FileNotFoundError(f"expected the shared datasets at {SHARED_DATA}")
    return SHARED_DATA


# Tiny models are dominated by per-op overhead: one thread is faster than two, and subprocess
# tests (torchrun with 2 ranks) would otherwise oversubscribe the CI machine's 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same RNG state, so results do not depend on test order."""
    torch.manual_seed(0)
    yield


TINY_CONFIG = {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.fixture(scope="session")
def compact_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen2 saved in the HF layout, expecting compact prompts (the CLIs' end-to-end tests)."""
    from timer1.core.policy import save_policy
    from timer1.train.random_init import random_policy
    from timer1.core.codec import PromptFormat

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_policy(random_policy(TINY_CONFIG, seed=0, prompt_format=PromptFormat("compact")), path)
    return path


@pytest.fixture(scope="session")
def forecast_cli():
    """forecast.py (a script, not part of the package) loaded as a module, for in-process CLI calls."""
    spec = importlib.util.spec_from_file_location("forecast_cli", REPO_ROOT / "forecast.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
