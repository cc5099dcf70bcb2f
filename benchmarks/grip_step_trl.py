"""TRL's GRPOTrainer on the same work as ``benchmarks/grip_step.py`` (the side-by-side reference).

Needs trl, transformers and datasets, which timer1 never imports: run it ONLY in the scratch venv,

    ../scratch-venv/bin/pip install trl
    ../scratch-venv/bin/python benchmarks/grip_step_trl.py --steps 5 --threads 1

The work matches grip_step.py's first row: a random Qwen2 (hidden 256, 4 layers, 4/2 heads, SwiGLU
1024, vocab 2048, tied embeddings), one 64-token prompt, one group of 16 completions forced to
128 tokens (``min_new_tokens=128``, so no early eos), beta 0.04 (TRL keeps a reference copy without
PEFT), loss_type "grpo" (per-sequence mean, like our seq-mean), num_iterations 1, AdamW lr 1e-6,
batch 16 in one micro-batch, the same reward (``timer1.core.rewards.compute_reward`` on the decoded
numbers; timer1 needs only torch/numpy/tokenizers, present in the venv). A step's time is taken
between the trainer's ``on_step_begin`` and ``on_step_end`` (generation, reward, reference
log-probs and the update all happen inside); the first step is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # timer1, for the same reward

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from timer1.core.rewards import compute_reward  # noqa: E402

VOCAB = 2048


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.t0)


def number_tokenizer() -> PreTrainedTokenizerFast:
    """Token i >= 3 is the word "i", so completions decode to numbers (as grip_step.py's NumberTokenizer);
    0-2 are pad/eos/unk (spelled as words: a special token spelled "1" would be cut out of "1562")."""
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{str(i): i for i in range(3, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         rope_theta=1e6, max_position_embeddings=512)
    model = Qwen2ForCausalLM(config)
    tokenizer = number_tokenizer()
    prompt = " ".join(str(i) for i in torch.randint(3, VOCAB, (64,), generator=torch.Generator().manual_seed(0)).tolist())
    dataset = Dataset.from_list([{"prompt": prompt}] * 64)
    target = np.sin(np.arange(24) / 3.0) * 100 + 500

    def reward(completions, **kwargs):
        return [compute_reward(c, target)["total"] for c in completions]

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        model_dir = f"{out}/model"  # TRL builds its reference copy from the model's directory
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=16,
                         gradient_accumulation_steps=1, max_completion_length=128, beta=0.04,
                         learning_rate=1e-6, loss_type="grpo", num_iterations=1, temperature=1.0,
                         generation_kwargs={"min_new_tokens": 128}, max_steps=args.steps + 1, use_cpu=True,
                         bf16=False, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                         seed=0, max_grad_norm=1.0, model_init_kwargs={"dtype": torch.float32})
        trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=cfg, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer])
        trainer.train()
        lengths = [h.get("completions/mean_length") for h in trainer.state.log_history if "completions/mean_length" in h]
    measured = timer.times[1:]
    step = float(np.mean(measured))
    import trl
    print(f"trl {trl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"mean completion length {lengths[-1] if lengths else '?'}")
    print(f"| TRL GRPOTrainer: G=16, k=1, mu=1 | step {step:.3f} s | {16 * 128 / step:,.0f} completion tok/s "
          f"| steps {', '.join(f'{t:.2f}' for t in measured)} |")


if __name__ == "__main__":
    main()
