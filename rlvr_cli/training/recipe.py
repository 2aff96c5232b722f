"""`rlvr train`: one GRPO run, from a composed config to a run directory.

GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) samples `num_generations` completions per
prompt, scores each with verifiable rewards, and uses the reward's deviation from its group's
mean as the advantage of a clipped policy-gradient step; no value model. TRL's `GRPOTrainer`
runs that loop; this module only wires the pieces together, in this order:

1. check every input (config values, data rows, optimizer import) - bad input fails here, in seconds;
2. create the run directory and start tracking;
3. load the model, build the trainer (PEFT adapter, rlvr's optimizer), train;
4. whatever happened - completed, diverged, interrupted, failed - save what there is and
   write `summary.json`.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.analysis import memory
from rlvr_cli.core import run_dir
from rlvr_cli.core.config import validate
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.data.problems import load_problems, prompt_dataset
from rlvr_cli.evaluation.evaluate import eval_inputs, evaluate_model, headline
from rlvr_cli.models import adapters, sparse_delta
from rlvr_cli.models.loading import check_model_source, load_model
from rlvr_cli.models.state import count_params, state_dict
from rlvr_cli.training import optimizers, rewards, tracking
from rlvr_cli.training.callbacks import GracefulStop, MetricsLog, RichProgress, UpdateSparsity

#: Process exit code per final status (`rlvr train` exits with it).
EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 130}


def grpo_config(cfg: DictConfig, output_dir: str, reward_weights: list[float], use_wandb: bool) -> Any:
    """The TRL `GRPOConfig` of a run: the `grpo` group's fields, the optimizer's trainer fields, and rlvr's fixed ones.

    Fixed: one log record per optimizer step; NaN losses logged as they are (transformers would
    otherwise replace them with the running mean and hide a divergence); no intermediate
    checkpoints (the run directory gets the final weights); bf16 autocast only for bfloat16
    models; CPU when no GPU is visible.

    Raises:
        BadInput: an unknown GRPOConfig field in the `grpo` group, or values TRL rejects.
    """
    import torch
    from trl import GRPOConfig

    fields = dict(OmegaConf.to_container(cfg.grpo))
    fields.update(optimizers.trainer_kwargs(cfg.optimizer))
    try:
        return GRPOConfig(
            output_dir=output_dir, seed=cfg.seed, data_seed=cfg.seed, logging_steps=1, save_strategy="no",
            report_to=["wandb"] if use_wandb else "none", logging_nan_inf_filter=False,
            use_cpu=not torch.cuda.is_available(),
            bf16=cfg.model.dtype == "bfloat16", fp16=cfg.model.dtype == "float16", disable_tqdm=True,
            reward_weights=reward_weights, **fields,
        )
    except TypeError as e:  # unknown field
        raise BadInput(f"grpo: {e}; see TRL's GRPOConfig for the valid fields") from None
    except ValueError as e:
        raise BadInput(f"grpo: {one_line(e)}") from None


def peak_memory_bytes() -> int:
    """Peak memory of this process on the device it trains on: allocated GPU memory on CUDA
    (`torch.cuda.max_memory_allocated`), else peak resident set size (`ru_maxrss`, KiB on Linux)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def update_sparsity_callback(cfg: DictConfig | None) -> UpdateSparsity | None:
    """The training-time update-sparsity monitor for the `sparsity` config block; None when it is null."""
    if cfg is None:
        return None
    max_bytes = None if cfg.get("max_copy_gb") is None else int(cfg.max_copy_gb * 1e9)
    return UpdateSparsity(cfg.every_n_steps, cfg.tolerance, max_bytes)


def save_weights(cfg: DictConfig, trainer: Any, tokenizer: Any, out: Path) -> dict[str, Any]:
    """Save the final weights into `out` as `cfg.save_format` says: `full` (the adapter for PEFT runs, else the
    whole model, with the tokenizer) or `sparse_delta` (`rlvr_cli.sparse_delta`: the entries that differ from
    the base model reloaded in the run's dtype).

    Returns:
        `weights_dir`, `weights_bytes` (the .safetensors files written, bytes) and `full_weights_bytes` (the
        tensor bytes of the whole model: what a full checkpoint holds).
    """
    trained = state_dict(trainer.model)
    if cfg.get("save_format", "full") == "sparse_delta":
        base, _ = load_model(cfg.model.name_or_path, cfg.model.dtype)
        sparse_delta.save(trained, state_dict(base), cfg.model.name_or_path, out)
        tokenizer.save_pretrained(out)
    else:
        trainer.save_model(str(out))
    return {"weights_dir": str(out), "weights_format": cfg.get("save_format", "full"),
            "weights_bytes": sum(f.stat().st_size for f in out.glob("*.safetensors")),
            "full_weights_bytes": sparse_delta.full_bytes(trained)}


def train(cfg: DictConfig, overrides: list[str] = (), progress: bool = True,
          callbacks: list[Any] = ()) -> dict[str, Any]:
    """Run GRPO as `cfg` says; return the summary that is also written to `summary.json`.

    Args:
        cfg: a composed run config (`rlvr_cli.config.compose`).
        overrides: the overrides it was composed from, recorded in the run directory.
        progress: draw a Rich progress bar.
        callbacks: extra `transformers.TrainerCallback`s (they see the model at every event).

    Returns:
        The summary: `status` (completed | diverged | interrupted | failed), `global_step`
        (optimizer steps), `reward_mean_first_quarter`, `reward_mean_last_quarter`,
        `trainable_params`, `total_params`, `optimizer_state_bytes` (measured) and
        `optimizer_state_bytes_analytic`, `peak_memory_bytes` (measured) and `memory_analytic_bytes` (weights,
        gradients, states and master weights: `rlvr_cli.memory.run_memory_analytic`), `update_sparsity`
        (the last measurement of `UpdateSparsity`, or None, with `update_sparsity_skipped` saying why),
        `wall_time_s`, `wandb_run_id`, `run_dir`, `weights_dir`, `weights_format`, `weights_bytes`,
        `full_weights_bytes`, `reason` (all sizes in bytes).

    Raises:
        BadInput: before any model is loaded, for every bad value the config or data holds.
        Exception: whatever failed during training, after `summary.json` says `failed`.
    """
    t_start = time.perf_counter()
    # 1. Check every input before anything heavy happens.
    validate(cfg)
    check_model_source(cfg.model.name_or_path)
    problems = load_problems(cfg.data, seed=cfg.seed)
    reward_funcs, reward_weights = rewards.build_rewards(cfg.rewards)
    optimizer_cls, optimizer_kwargs = optimizers.optimizer_cls_and_kwargs(cfg.optimizer)
    peft_config = adapters.peft_config(cfg.adapter)
    eval_problems, eval_sampling = eval_inputs(cfg.get("eval"))
    path = run_dir.run_path(cfg)
    args = grpo_config(cfg, str(path), reward_weights, use_wandb=cfg.logger.name == "wandb")

    # 2. The run directory, then tracking.
    run = run_dir.create(path, cfg, list(overrides))
    summary: dict[str, Any] = {"status": "running", "run_dir": str(path), "model": cfg.model.name_or_path,
                               "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, "adapter": cfg.adapter.name,
                               "r": cfg.adapter.get("r"), "seed": cfg.seed}
    run_dir.write_summary(run, summary)
    summary["wandb_run_id"] = tracking.start(cfg, path, path.name)

    # 3. Model, trainer, training.
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    metrics = MetricsLog(run.metrics, stop_on_nonfinite=cfg.stop_on_nonfinite)
    sparsity = update_sparsity_callback(cfg.get("sparsity"))
    bar = RichProgress(f"GRPO {path.name}") if progress else None
    stop = GracefulStop()
    trainer = None
    error: BaseException | None = None
    try:
        with stop:  # a signal from here on stops the run cleanly, during the model load too
            model, tokenizer = load_model(cfg.model.name_or_path, cfg.model.dtype)
            trainer = GRPOTrainer(
                model=model, reward_funcs=reward_funcs, args=args, processing_class=tokenizer,
                peft_config=peft_config, train_dataset=prompt_dataset(problems, cfg.data.get("instruction")),
                callbacks=[metrics, stop, *callbacks] + ([bar] if bar else []),
            )
            trainer.optimizer_cls_and_kwargs = (optimizer_cls, optimizer_kwargs)  # read by Trainer.create_optimizer
            if sparsity:  # first, so that W&B and metrics.jsonl see the values it adds to a step's logs
                trainer.callback_handler.callbacks.insert(0, sparsity)
            trainer.remove_callback(PrinterCallback)  # prints every log dict when tqdm is off; Rich draws instead
            trainer.train()
        status = "diverged" if metrics.diverged else "interrupted" if stop.signal_name else "completed"
        summary["reason"] = metrics.diverged or (f"stopped by {stop.signal_name}" if stop.signal_name else None)
    except KeyboardInterrupt:
        status, summary["reason"] = "interrupted", "KeyboardInterrupt"
    except Exception as e:  # recorded, then re-raised below
        status, summary["reason"], error = "failed", f"{type(e).__name__}: {e}", e
    finally:
        if bar:
            bar.stop()

    # 4. Save what there is; evaluate a completed run; write the summary.
    summary["weights_dir"] = None
    if trainer is not None and status in ("completed", "interrupted"):
        summary.update(save_weights(cfg, trainer, tokenizer, run.weights))
    if eval_problems and status == "completed":
        identity = {"spec": str(path), "kind": "training run", "path": str(run.weights),
                    "base": cfg.model.name_or_path, "dtype": cfg.model.dtype}
        results = evaluate_model(trainer.model, tokenizer, eval_problems, eval_sampling, path / "eval", identity,
                                 progress=progress)
        summary["eval"] = headline(results)
    first, last = run_dir.quarter_means([r["reward"] for r in metrics.records])
    trainable, total = count_params(trainer.model) if trainer is not None else (None, None)
    analytic = memory.run_memory_analytic(trainer.model, cfg.optimizer.name, options=optimizer_kwargs) \
        if trainer is not None else {}
    summary.update(
        status=status,
        global_step=trainer.state.global_step if trainer is not None else 0,
        reward_mean_first_quarter=first,
        reward_mean_last_quarter=last,
        trainable_params=trainable,
        total_params=total,
        optimizer_state_bytes=optimizers.state_bytes(trainer.optimizer) if trainer and trainer.optimizer else 0,
        peak_memory_bytes=peak_memory_bytes(),
        **analytic,
        update_sparsity=sparsity.latest if sparsity else None,
        update_sparsity_skipped=sparsity.skipped if sparsity else "sparsity=null",
        wall_time_s=round(time.perf_counter() - t_start, 3),
    )
    run_dir.write_summary(run, summary)
    tracking.finish(summary)
    if error is not None:
        raise error
    return summary

