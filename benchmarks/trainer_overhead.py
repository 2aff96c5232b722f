"""`rlvr train` against a plain TRL `GRPOTrainer` script: overhead and equality.

Both train `tiny-random` on the same generated arithmetic prompts with the same seed, plain SGD
(lr 0.01, clipping 1.0, constant schedule) and the same dense reward (completion characters / 100,
since a random model never solves a problem). The plain script uses TRL's own `optim="sgd"`; rlvr
builds `torch.optim.SGD` itself. Reported: median optimizer-step time of each (same timing callback,
runs interleaved, `--repeats` times), their ratio (goal <= 1.03), and whether the per-step reward and
loss sequences are identical.

    python benchmarks/trainer_overhead.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from transformers import PrinterCallback, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from rlvr_cli.core.compose import compose
from rlvr_cli.data.problems import arithmetic_problems, prompt_dataset
from rlvr_cli.models.loading import load_model
from rlvr_cli.training import rewards
from rlvr_cli.training.recipe import train

GRPO = dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=16, beta=0.0,
            loss_type="dapo", epsilon=0.2, epsilon_high=0.28, temperature=1.0, scale_rewards="group")


def chars(completions, **_):
    """Dense reward: characters / 100."""
    return [len(rewards.completion_text(c)) / 100 for c in completions]


class StepTimer(TrainerCallback):
    """Seconds per optimizer step, generation included."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)


def plain_trl(steps: int, seed: int, out: str) -> tuple[list[float], list[float], list[float]]:
    """The TRL way, no rlvr in the loop: returns (step times, rewards, losses)."""
    model, tokenizer = load_model("tiny-random")
    dataset = prompt_dataset(arithmetic_problems(2000, 20, 2, ["+"], seed), "Put your final answer within \\boxed{}.")
    args = GRPOConfig(output_dir=out, seed=seed, data_seed=seed, max_steps=steps, learning_rate=0.01, optim="sgd",
                      lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=1, save_strategy="no",
                      report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False,
                      disable_tqdm=True, logging_nan_inf_filter=False, **GRPO)
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=[chars], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return timer.times, [h["reward"] for h in logs], [h["loss"] for h in logs]


def rlvr(steps: int, seed: int, out: str) -> tuple[list[float], list[float], list[float]]:
    """The same run through `rlvr train`: returns (step times, rewards, losses)."""
    overrides = ["model=tiny-random", "logger=none", f"seed={seed}", f"output_dir={out}", "run_name=rlvr",
                 f"grpo.max_steps={steps}", "~rewards.correctness", "~rewards.format",
                 f"+rewards.{chars.__module__}.chars=1.0",  # a reward by its dotted import path
                 *(f"grpo.{k}={v}" for k, v in GRPO.items())]
    timer = StepTimer()
    train(compose(overrides), overrides, progress=False, callbacks=[timer])
    from rlvr_cli.core.run_dir import read_metrics

    records = read_metrics(__import__("pathlib").Path(out) / "rlvr" / "metrics.jsonl")
    return timer.times, [r["reward"] for r in records], [r["loss"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    times = {"trl": [], "rlvr": []}
    seqs = {}
    for _ in range(a.repeats):
        for name, fn in (("trl", plain_trl), ("rlvr", rlvr)):
            with tempfile.TemporaryDirectory() as out:
                t, rew, loss = fn(a.steps, a.seed, out)
            times[name] += t[1:]  # the first step carries one-off set-up
            seqs.setdefault(name, (rew, loss))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"steps={a.steps} repeats={a.repeats} seed={a.seed}")
    print(f"median step time: plain TRL {med['trl'] * 1e3:.1f} ms, rlvr {med['rlvr'] * 1e3:.1f} ms, "
          f"ratio {med['rlvr'] / med['trl']:.3f}")
    print(f"reward sequences identical: {seqs['trl'][0] == seqs['rlvr'][0]}")
    print(f"loss sequences identical:   {seqs['trl'][1] == seqs['rlvr'][1]}")
    print(f"rewards (first 5): {seqs['rlvr'][0][:5]}")


if __name__ == "__main__":
    main()
