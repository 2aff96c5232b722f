"""`rlvr train`: one GRPO run, from a composed config to a run directory.

GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) samples `num_generations` completions per
prompt, scores each with verifiable rewards, and uses the reward's deviation from its group's
mean as the advantage of a clipped policy-gradient step; no value model. TRL's `GRPOTrainer`
runs that loop; this module only wires the pieces together. `GRPORecipe.run` reads in their order:

1. `check` every input (config values, data rows, optimizer import) - bad input fails here, in seconds;
2. create the run directory (`lifecycle.run_lifecycle` owns the run from here: its status, signals, the ranks'
   agreement and `summary.json`, written whatever happens);
3. `setup`: tracking, the axes' services (a vLLM server where asked), the model, the trainer (PEFT adapter, rlvr's
   optimizer);
4. `train`; 5. `save` what there is (never a diverged model); 6. `evaluate` a completed run; 7. `cleanup`: the
   headline figures.
"""

from __future__ import annotations

import resource
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.analysis import memory
from rlvr_cli.core import precision, run_dir
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.run_config import RunConfig, Sparsity
from rlvr_cli.data.problems import load_problems, prompt_dataset
from rlvr_cli.evaluation.evaluate import eval_inputs, evaluate_model, headline
from rlvr_cli.models import adapters
from rlvr_cli.models.loading import check_weights, load_config, load_model
from rlvr_cli.models.parameters import count_params
from rlvr_cli.optimizers import build as optimizers
from rlvr_cli.optimizers.state import state_bytes
from rlvr_cli.training import (
    axes,
    distributed,
    lifecycle,
    parallelism,
    pruning,
    rewards,
    tracking,
)
from rlvr_cli.training.callbacks import (
    SHARDED,
    Heartbeat,
    MetricsLog,
    RichProgress,
    UpdateSparsity,
)
from rlvr_cli.training.final_weights import eval_model, save_weights, sharded_sparsity

EXIT_CODES = run_dir.EXIT_CODES  # final status -> exit code of `rlvr train` (defined in rlvr_cli.core.run_dir)


@dataclass
class Inputs:
    """Everything `train` needs that can be checked before a model loads (`check_inputs`).

    Attributes:
        problems: training rows (`id`, `problem`, `answer`).
        reward_funcs, reward_weights: TRL reward functions and their weights (`rewards.build_rewards`).
        optimizer: `(class or factory, keyword arguments)` for `Trainer.optimizer_cls_and_kwargs`.
        peft_config: a `peft.PeftConfig`, or None for full fine-tuning.
        eval_problems, eval_sampling: benchmark name -> problems, and the sampling, of the final evaluation
            (`({}, None)` when `eval.benchmarks` is empty).
        path: the run directory to create.
        args: the TRL `GRPOConfig`.
        context: what every hook is given (`rlvr_cli.training.axes.RunContext`): the config, the resolved
            precision, the process counts.
        resume_from: the checkpoint a paused trial resumes from (`trial.resume`), else None.
        axes: the run's axes (`rlvr_cli.training.axes.run_axes`), whose hooks every stage calls.
    """

    problems: list[dict[str, str]]
    reward_funcs: list[Any]
    reward_weights: list[float]
    optimizer: tuple[Any, dict[str, Any]]
    peft_config: Any
    eval_problems: dict[str, list[dict[str, str]]]
    eval_sampling: Any
    path: Path
    args: Any
    context: axes.RunContext
    resume_from: Path | None = None
    axes: list[axes.Axis] = field(default_factory=list)

    @property
    def precision(self) -> precision.Precision:
        """The resolved `precision` (`rlvr_cli.core.precision.resolve`: `auto` made concrete), the context's."""
        return self.context.precision


def check_inputs(cfg: RunConfig, claim: bool = True) -> Inputs:
    """Check every input of a run and build what can be built without a model: bad input fails here, in seconds,
    before the run directory exists. The config's own values were validated where it was built
    (`rlvr_cli.core.compose.compose_run`); this checks what they name: the model, data, rewards, optimizer, adapter,
    benchmarks, the launch.

    Args:
        cfg: the typed run config (`rlvr_cli.core.compose.compose_run`).
        claim: check that the run directory does not exist yet (False: a machine other than the first of a
            multi-machine run, whose run directory the first machine creates).

    Raises:
        BadInput: the first bad config value, data row, reward name, optimizer import, adapter, benchmark or
            GRPOConfig field.
    """
    load_config(cfg.model.name_or_path)  # the model exists and its config.json parses
    check_weights(cfg.model.name_or_path)  # and its local weights files are whole (their headers)
    problems = load_problems(cfg.data, seed=cfg.seed)
    reward_funcs, reward_weights = rewards.build_rewards(cfg.rewards)
    optimizer = optimizers.trainer_optimizer(cfg)  # a factory over the model for LoRA+, LoRA-FA, Muon
    launch = distributed.use_slurm_env()
    context = axes.run_context(cfg, launch.world_size, main=launch.is_main)  # what every axis's hook is given
    run_axes = axes.run_axes(cfg)
    for axis in run_axes:  # each axis's own checks: an option's hooks module, the distributed mode, the generation
        axis.check(context)  # backend, the adapter (on the meta model), a search trial's study
    peft_config = adapters.peft_config(cfg.adapter)
    eval_problems, eval_sampling = eval_inputs(cfg.eval)
    distributed.start_cpu_group(launch, cfg.distributed.timeout_s)  # gloo with the collective timeout (CPU runs)
    # Under a launcher, building the GRPOConfig starts the process group (accelerate's PartialState).
    args = grpo_config(context, cfg.output_dir, reward_weights, use_wandb=cfg.use_wandb, run_axes=run_axes)
    parallelism.check_deepspeed(args)
    distributed.check_started(launch)
    # One run directory whatever the world size: rank 0 picks the path (a default name has a random suffix and the
    # time of its own clock) and every rank gets it, or rank 0's refusal.
    if resuming(cfg):  # a promoted trial: its paused run directory, reopened (`run_dir.reopen`) in `train`
        path = Path(cfg.output_dir, cfg.run_name)
        resume_from = pruning.resume_checkpoint(path)
    else:
        resume_from = None
        path = distributed.on_main(lambda: run_dir.run_path(cfg)) if claim else Path(cfg.output_dir, cfg.run_name)
    args.output_dir = str(path)
    return Inputs(problems, reward_funcs, reward_weights, optimizer, peft_config, eval_problems, eval_sampling,
                  path, args, context, resume_from, run_axes)


def grpo_config(run: axes.RunContext, output_dir: str, reward_weights: list[float], use_wandb: bool,
                run_axes: list[axes.Axis] = axes.BUILT_IN) -> Any:
    """The TRL `GRPOConfig` of a run: the axes' trainer fields, the `grpo` group's fields, the optimizer's trainer
    fields, and rlvr's fixed ones.

    Fixed: one log record per optimizer step; NaN losses logged as they are (transformers would
    otherwise replace them with the running mean and hide a divergence); no intermediate
    checkpoints (the run directory gets the final weights); CPU when no GPU is visible. The axes add theirs:
    `bf16`/`fp16` autocast as the precision says (`Precision.trainer_fields`), the `distributed` group's
    (`parallelism.trainer_fields`: ddp_timeout, fsdp/fsdp_config, deepspeed), the `generation` group's (TRL's
    `use_vllm`, `vllm_*`).

    Args:
        run: the run's config, resolved precision and process counts (`axes.RunContext`).
        run_axes: the run's axes, whose `trainer_fields` the `grpo` group's fields may override.

    Raises:
        BadInput: an unknown GRPOConfig field in the `grpo` group, or values TRL rejects.
    """
    import torch
    from trl import GRPOConfig

    cfg, fields = run.cfg, {}
    for axis in run_axes:  # the precision's, the distributed mode's, the generation backend's, an option's module's
        fields.update(axis.trainer_fields(run))
    fields.update(cfg.grpo.grpo_fields())
    fields.update(optimizers.trainer_kwargs(cfg))  # the learning rate and clipping, over the grpo group's
    try:
        return GRPOConfig(
            output_dir=output_dir, seed=cfg.seed, data_seed=cfg.seed, logging_steps=1, save_strategy="no",
            report_to=["wandb"] if use_wandb else "none", logging_nan_inf_filter=False,
            use_cpu=not torch.cuda.is_available(), disable_tqdm=True, reward_weights=reward_weights, **fields,
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


def update_sparsity_callback(cfg: Sparsity | None) -> UpdateSparsity | None:
    """The training-time update-sparsity monitor for the `sparsity` config block; None when it is null."""
    if cfg is None:
        return None
    max_bytes = None if cfg.max_copy_gb is None else int(cfg.max_copy_gb * 1e9)
    return UpdateSparsity(cfg.every_n_steps, cfg.tolerance, max_bytes)


def build_trainer(cfg: RunConfig, inputs: Inputs, model: Any, tokenizer: Any, callbacks: list[Any],
                  sparsity: UpdateSparsity | None) -> Any:
    """A TRL `GRPOTrainer` over the loaded model with rlvr's optimizer (built by `Trainer.create_optimizer`, so
    the same path works under FSDP) and callbacks; `sparsity` goes first, so that metrics.jsonl and W&B see
    the values it adds to a step's logs."""
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    cls = GRPOTrainer
    for axis in inputs.axes:  # e.g. AdaLoRA's subclass (its hooks module)
        cls = axis.trainer_class(cls, inputs.context)
    trainer = cls(
        model=model, reward_funcs=inputs.reward_funcs, args=inputs.args, processing_class=tokenizer,
        peft_config=inputs.peft_config, train_dataset=prompt_dataset(inputs.problems, cfg.data.instruction),
        callbacks=callbacks,
    )
    trainer.optimizer_cls_and_kwargs = inputs.optimizer  # read by Trainer.create_optimizer
    if sparsity:
        trainer.callback_handler.callbacks.insert(0, sparsity)
    trainer.remove_callback(PrinterCallback)  # prints every log dict when tqdm is off; Rich draws instead
    return trainer


def final_figures(cfg: RunConfig, inputs: Inputs, trainer: Any, metrics: MetricsLog,
                  sparsity: UpdateSparsity | None) -> dict[str, Any]:
    """The headline figures of summary.json from whatever the run got to (the trainer may be None: the model never
    loaded). Sizes in bytes; see `train` for the keys.

    Raises:
        BadInput: the analytic memory of the optimizer cannot be computed (`rlvr_cli.analysis.memory`).
    """
    first, last = run_dir.quarter_means([r["reward"] for r in metrics.records])
    out: dict[str, Any] = {
        "global_step": trainer.state.global_step if trainer is not None else 0,
        "reward_mean_first_quarter": first, "reward_mean_last_quarter": last,
        **run_dir.learning_signal(metrics.records),
        "update_sparsity": sparsity.latest if sparsity else None,
        "update_sparsity_skipped": sparsity.skipped if sparsity else "sparsity=null",
        "peak_memory_bytes": peak_memory_bytes(),
        "optimizer_state_bytes": state_bytes(trainer.optimizer) if trainer and trainer.optimizer else 0,
        "trainable_params": None, "total_params": None,
    }
    if trainer is not None:
        out["trainable_params"], out["total_params"] = count_params(trainer.model)
        mixed = inputs.precision.name if inputs.precision.name.endswith("-mixed") else None  # + autocast's copy
        out.update(memory.run_memory_analytic(trainer.model, cfg.optimizer.name, mixed, options=inputs.optimizer[1]))
        for axis in inputs.axes:  # e.g. AdaLoRA's final rank of every matrix
            out.update(axis.summary_fields(trainer.model, inputs.context))
    return out


def identity(cfg: RunConfig, inputs: Inputs) -> dict[str, Any]:
    """summary.json's identity keys of a run: what was asked (model, optimizer, lr, adapter, rank, seed, precision,
    world size, distributed mode)."""
    return {"model": cfg.model.name_or_path, "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr,
            "adapter": cfg.adapter.name, "r": cfg.adapter.r, "seed": cfg.seed, **inputs.precision.summary(),
            "world_size": inputs.args.world_size, "distributed": cfg.distributed.name}


def resuming(cfg: RunConfig) -> bool:
    """Whether the run resumes a paused trial (`trial.resume`, set by rlvr sweep's promotion)."""
    return cfg.trial is not None and cfg.trial.resume


class GRPORecipe:
    """One `rlvr train` run as a recipe (torchtune's recipes are the model: https://github.com/pytorch/torchtune,
    `recipes/`): its state lives on the object, and `run` reads as its stages, in order. The run's lifecycle
    (`lifecycle.run_lifecycle`: status, signals, the ranks' agreement, summary.json written whatever happens) wraps
    every stage after `check`.

    Attributes:
        cfg: the typed run config (`rlvr_cli.core.compose.compose_run`).
        overrides: the overrides it was composed from, recorded in the run directory.
        progress: draw a Rich progress bar (main process only).
        callbacks: extra `transformers.TrainerCallback`s (they see the model at every event).
        inputs: what `check` built before any model loads (`Inputs`).
        launch_files: the launch's files for the run directory (`parallelism.launch_files`), built by `check`.
        life: the run while it lives (`lifecycle.Life`), from `setup` on; `life.trainer` is the TRL `GRPOTrainer`.
        tokenizer: the model's tokenizer, once loaded (None: no model loaded).
        sparsity: the update-sparsity monitor (None with `sparsity=null`).
        bar: the progress bar (None without `progress`, and on the other ranks).
    """

    def __init__(self, cfg: RunConfig, overrides: list[str] = (), progress: bool = True,
                 callbacks: list[Any] = ()) -> None:
        self.cfg, self.overrides, self.progress, self.callbacks = cfg, list(overrides), progress, list(callbacks)
        self.inputs: Inputs | None = None
        self.launch_files: dict[str, str] = {}
        self.life: lifecycle.Life | None = None
        self.tokenizer: Any = None
        self.sparsity: UpdateSparsity | None = None
        self.bar: RichProgress | None = None

    @property
    def main(self) -> bool:
        """Whether this is the main process of the run (it writes the files)."""
        return self.inputs.args.process_index == 0

    def run(self) -> run_dir.Summary:
        """Run every stage; return the summary that is also written to `summary.json`.

        Returns:
            The summary (`rlvr_cli.core.run_dir.Summary`: status completed | diverged | interrupted | failed | pruned
            | paused and the headline figures; memory from `rlvr_cli.analysis.memory.run_memory_analytic`, update
            sparsity from `UpdateSparsity`, scores from `rlvr_cli.evaluation`). A failure after the run directory
            exists is not raised: the summary says `failed` with the stage and the error in `reason`, and the
            traceback is in `<run>/traceback.txt`; a second Ctrl-C ends the run `interrupted`.

        Raises:
            BadInput: before the run directory exists, for every bad value the config or data holds (`check`).
        """
        self.check()  # 1. every input checked: nothing is written on bad input
        # 2. The run directory (created by the main process; the other ranks of a launch wait for it). From here on,
        # every way out ends with a final status in summary.json.
        with lifecycle.run_lifecycle(self.create_run_dir, identity(self.cfg, self.inputs), main=self.main,
                                     stop_on_nonfinite=self.cfg.stop_on_nonfinite) as life:
            self.setup(life)  # 3. tracking, a vLLM server, the model, the trainer
            self.train()  # 4. train, unless a signal came first
            self.save()  # 5. what there is (never a diverged model)
            self.evaluate()  # 6. a completed run, when eval.benchmarks lists any
            self.cleanup()  # 7. the headline figures
        return life.summary

    def check(self) -> None:
        """Check every input and build what can be built without a model (`check_inputs`).

        Raises:
            BadInput: the first bad config value, data row, reward, optimizer, adapter, benchmark or GRPOConfig field.
        """
        self.inputs = check_inputs(self.cfg)
        self.launch_files = parallelism.launch_files(self.inputs.path, self.cfg, self.overrides,
                                                     self.inputs.args.world_size,
                                                     self.inputs.precision.accelerate_name)

    def create_run_dir(self) -> run_dir.RunDir:
        """The run directory: created (`run_dir.create`, with the launch files), or a paused trial's reopened."""
        if resuming(self.cfg):
            return run_dir.reopen(self.inputs.path)
        return run_dir.create(self.inputs.path, self.cfg, self.overrides, extra=self.launch_files)

    def setup(self, life: lifecycle.Life) -> None:
        """Start tracking and every axis's service (`Axis.serve`: where the `generation` choice asks rlvr for one, a
        vLLM server; each stops when the run ends); then load the model and build the trainer into `life.trainer`
        with every axis's callbacks (a search trial's reports), unless a stop signal came first; then every axis's
        `after_model_load` (PiSSA and MiLoRA keep their initial adapter for the final conversion)."""
        cfg, inputs = self.cfg, self.inputs
        self.life = life
        self.sparsity = update_sparsity_callback(cfg.sparsity)
        if self.progress and life.main:
            self.bar = RichProgress(f"GRPO {life.run.path.name}")
            life.closing.callback(self.bar.stop)
        life.figures = lambda: final_figures(cfg, inputs, life.trainer, life.metrics, self.sparsity)
        life.summary["wandb_run_id"] = tracking.start(cfg, life.run.path, life.run.path.name)
        life.stage = "services"
        for axis in inputs.axes:  # e.g. the vLLM server a generation choice asks rlvr to start; it ends with the run
            life.closing.enter_context(axis.serve(inputs.context, life.run.path))
        life.stage = "model load"
        if not life.go_on:
            return
        model, self.tokenizer = load_model(cfg.model.name_or_path, inputs.precision.weights_dtype)
        life.stage = "training"
        watchers = [life.metrics, life.stop, *([Heartbeat(life.run, life.summary)] if life.main else []),
                    *([life.weights] if life.weights else [])]
        own = [c for axis in inputs.axes for c in axis.callbacks(inputs.context, life.run.path)]  # a trial's reports
        extra = [*own, *self.callbacks, *([self.bar] if self.bar else [])]
        life.trainer = build_trainer(cfg, inputs, model, self.tokenizer, watchers + extra, self.sparsity)
        for axis in inputs.axes:  # e.g. PiSSA, MiLoRA: the initial adapter, which the final save converts against
            axis.after_model_load(life.trainer.model, inputs.context, life.run.path)
        life.summary["distributed"] = parallelism.mode(life.trainer)  # what the accelerator does, not what was asked

    def train(self) -> None:
        """`trainer.train()` (unless a stop signal came first; from its checkpoint when a paused trial resumes),
        then the status it ended with (`Life.training_ended`), then every axis's `after_train`: its summary keys, and
        the status of a completed run that an axis ended otherwise (the pruning axis: `pruned` when a search's
        pruner stopped it, `paused` at `trial.pause_at`, `rlvr_cli.training.pruning.outcome`)."""
        life, inputs, checkpoint = self.life, self.inputs, self.inputs.resume_from
        if life.go_on:
            life.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if self.bar:
            self.bar.stop()
        life.training_ended()
        if life.trainer is None:
            return
        for axis in inputs.axes:  # e.g. a search trial's objective, and pruned or paused where it stopped the run
            ending = axis.after_train(life.trainer, inputs.context, life.run.path, life.status)
            status, reason = ending.pop("status", None), ending.pop("reason", None)
            life.summary.update(ending)
            if status is not None and life.status == run_dir.COMPLETED:
                life.status, life.reason = status, reason

    def save(self) -> None:
        """Save the final weights of a completed or interrupted run (`save_weights`), gathered first where they are
        sharded (ZeRO-3, FSDP: a collective, on every rank), with the update sparsity measured on the gathered
        weights; a failed save leaves no partial weights."""
        life, sparsity = self.life, self.sparsity
        life.stage = "saving"
        trainer = life.trainer
        if trainer is None or life.status not in (run_dir.COMPLETED, run_dir.INTERRUPTED):
            return
        try:
            gathered = parallelism.gathered_state(trainer)  # every rank: ZeRO-3/FSDP shards, onto rank 0
            life.summary.update(save_weights(self.cfg, trainer, self.tokenizer, life.run.weights, gathered,
                                             self.inputs.axes, self.inputs.context))
            if gathered is not None and sparsity and sparsity.skipped == SHARDED:
                sharded_sparsity(self.cfg, sparsity, gathered, trainer.state.global_step, self.inputs.peft_config,
                                 trainer.args)
        except BaseException:
            if life.main:
                shutil.rmtree(life.run.weights, ignore_errors=True)  # no partial weights; frees a full disk
            raise

    def evaluate(self) -> None:
        """Evaluate a completed run's final model on the main process with rlvr eval's protocol (`eval.benchmarks`),
        into `<run>/eval/` and summary.json's `eval` headline."""
        cfg, inputs, life = self.cfg, self.inputs, self.life
        life.stage = "evaluation"
        if not (inputs.eval_problems and life.status == run_dir.COMPLETED and life.main):
            return
        kind = "adapter" if inputs.peft_config else \
            "sparse-delta" if cfg.save_format == "sparse_delta" else "full"
        identity = {"spec": str(life.run.path), "kind": f"run-{kind}", "path": str(life.run.weights),
                    "base": cfg.model.name_or_path, "dtype": inputs.precision.weights_dtype}
        with parallelism.whole_loading(life.trainer.args):  # the main process alone: no ZeRO-3 synced_gpus
            results = evaluate_model(eval_model(life.trainer, identity), self.tokenizer, inputs.eval_problems,
                                     inputs.eval_sampling, life.run.path / "eval", identity, progress=self.progress,
                                     extract=cfg.eval.extract)
        life.summary["eval"] = headline(results)

    def cleanup(self) -> None:
        """The headline figures of what the run got to (`final_figures`) into the summary; the lifecycle then
        closes what ends with the run and writes summary.json."""
        self.life.stage = "memory accounting"
        self.life.summary.update(self.life.figures())


def train(cfg: RunConfig, overrides: list[str] = (), progress: bool = True,
          callbacks: list[Any] = ()) -> run_dir.Summary:
    """Run GRPO as `cfg` says (`GRPORecipe.run`); return the summary that is also written to `summary.json`.

    Args:
        cfg: a typed run config (`rlvr_cli.core.compose.compose_run`).
        overrides: the overrides it was composed from, recorded in the run directory.
        progress: draw a Rich progress bar.
        callbacks: extra `transformers.TrainerCallback`s (they see the model at every event).

    Raises:
        BadInput: before the run directory exists, for every bad value the config or data holds.
    """
    return GRPORecipe(cfg, overrides, progress, callbacks).run()
