"""AdaLoRA under GRPO, as its paper defines it: the glue that PEFT leaves to the training loop.

AdaLoRA (Zhang et al., arXiv 2303.10512) writes each adapted matrix's update as P diag(Lambda) Q (PEFT:
`lora_B` [out, r], `lora_E` [r, 1], `lora_A` [r, in]), scores every singular triplet by a smoothed
sensitivity |w * grad| (EMA factor `beta1`) times its uncertainty (`beta2`), and masks the least important
singular values to zero so that the total rank follows a cubic budget schedule from `init_r` to `target_r` per
matrix on average (warm-up `tinit` steps, re-masking every `deltaT` steps, `tfinal` final steps). P and Q are
kept near-orthogonal by a penalty added to the training loss. PEFT implements the masking
(`AdaLoraModel.update_and_allocate`) and adds the penalty in `AdaLoraModel.forward`, but only

- when someone calls `update_and_allocate(step)` after every optimizer step, before the gradients are
  zeroed: TRL's GRPOTrainer never does, and
- when the model's forward returns a `.loss`: GRPO computes its loss from the logits,

so a plain `GRPOTrainer(peft_config=AdaLoraConfig(...))` silently trains fixed-rank LoRA (peft issues #1801 and
#1327). `AdaLoraGRPOTrainer` closes both gaps: the `AdaLoraAllocate` callback calls `update_and_allocate` at
transformers' `on_optimizer_step` event (after `optimizer.step()`, before `zero_grad()`), and `compute_loss` adds
`orth_reg_weight * orthogonal_penalty(model)` to GRPO's loss. `check` refuses, before any model loads, a schedule
that cannot prune within `grpo.max_steps`; `rank_summary` gives summary.json the final rank of every matrix.

This module is the `hooks` of `conf/adapter/adalora.yaml` (`rlvr_cli.training.axes`): `check`, `trainer_class` and
`summary_fields` are its hooks, so the recipe names no AdaLoRA.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from rlvr_cli.core.errors import BadInput

if TYPE_CHECKING:  # torch, transformers and trl load inside the functions: `check` runs before any of them
    import torch

    from rlvr_cli.core.run_config import RunConfig
    from rlvr_cli.training.axes import RunContext

#: AdaLoraConfig's schedule fields, in optimizer steps but the ranks: an AdaLoRA file sets every one
#: (`conf/adapter/adalora.yaml`, whose `total_step` follows `grpo.max_steps`).
SCHEDULE_KEYS = ("init_r", "target_r", "tinit", "tfinal", "deltaT", "total_step")


def masks_at(step: int, tinit: int, tfinal: int, deltaT: int, total_step: int) -> bool:
    """Whether PEFT's `update_and_allocate(step)` leaves the singular values masked after optimizer step `step`.

    The branches of peft 0.21's `AdaLoraModel.update_and_allocate` and `RankAllocator.budget_schedule`: no mask
    during the warm-up (`step <= tinit`); a mask at the budget of the cubic schedule when `step % deltaT == 0`
    before `total_step - tfinal`; the final mask at `step == total_step - tfinal` and the same pattern re-applied
    at every later step. Masked singular values stay trainable: between masks the optimizer may revive them.

    Args:
        step: the index of the optimizer step just taken, from 0 (`TrainerState.global_step` at
            `on_optimizer_step`: transformers increments it after that event).
        tinit, tfinal, deltaT, total_step: the AdaLoraConfig schedule, in optimizer steps.
    """
    if step >= total_step - tfinal:
        return True
    return step > tinit and step % deltaT == 0


def check(run: RunContext) -> None:
    """The `check` hook of `conf/adapter/adalora.yaml`'s `hooks` (`rlvr_cli.training.axes`): `check_schedule`.

    Raises:
        BadInput: as `check_schedule`.
    """
    check_schedule(run.cfg)


def check_schedule(cfg: RunConfig) -> None:
    """Refuse, before any model loads, an AdaLoRA schedule that would not prune within the run's optimizer steps
    (nothing to do for other adapters).

    The schedule fits when (1) `target_r < init_r` (the budget decreases; PEFT's mask would fail on an empty
    selection otherwise), (2) `total_step <= grpo.max_steps` (the budget reaches its target before the run
    ends), (3) `tinit < total_step - tfinal` (a budget phase exists: PEFT's own condition), and (4) the last
    optimizer step, index `grpo.max_steps - 1`, applies the mask (`masks_at`), so that the trained adapter is the
    pruned one and not one whose masked singular values the optimizer revived after the last allocation.

    Args:
        cfg: the typed run config (its `adapter` and `grpo`).

    Raises:
        BadInput: a schedule field the adapter file lacks (`SCHEDULE_KEYS`: nothing falls back to PEFT's defaults),
            or the first condition that fails, naming the values and a fix.
    """
    a = cfg.adapter
    if not str(a.target or "").endswith("AdaLoraConfig"):
        return
    missing = [k for k in SCHEDULE_KEYS if k not in a.peft]
    if missing:
        raise BadInput(f"adapter={a.name} builds a peft.AdaLoraConfig but sets no adapter.{missing[0]}: an AdaLoRA "
                       f"file sets its whole schedule ({', '.join(SCHEDULE_KEYS)}), as conf/adapter/adalora.yaml does; "
                       f"e.g. +adapter.{missing[0]}=VALUE")
    init_r, target_r, tinit, tfinal, delta, total = (a.peft[k] for k in SCHEDULE_KEYS)
    steps = cfg.grpo.max_steps
    if target_r >= init_r:
        fix = f"adapter.target_r={init_r * 2 // 3}" if init_r >= 2 else f"adapter.r={target_r * 3 // 2 + 1}"
        raise BadInput(f"adapter.target_r={target_r} must be below the initial rank init_r={init_r} (adapter.r): "
                       f"AdaLoRA prunes from init_r down to target_r per matrix on average; e.g. {fix}")
    if steps < 2:
        raise BadInput(f"adapter=adalora needs grpo.max_steps >= 2, got {steps}: its first optimizer step only "
                       f"scores importance; e.g. grpo.max_steps=30")
    if total > steps:
        raise BadInput(f"adapter.total_step={total} is more than grpo.max_steps={steps}: the run would end before "
                       f"AdaLoRA's rank budget reaches target_r; drop the override (total_step follows grpo.max_steps)")
    where = (f"adapter=adalora: the schedule tinit={tinit}, tfinal={tfinal}, deltaT={delta}, total_step={total} "
             f"does not fit grpo.max_steps={steps}")
    if tinit >= total - tfinal:
        raise BadInput(f"{where}: tinit + tfinal >= total_step leaves no step to prune in; lower adapter.tinit or "
                       f"adapter.tfinal, e.g. adapter.tinit=0 adapter.tfinal={max(0, min(tfinal, total - 1))}")
    last = steps - 1  # optimizer steps are counted from 0
    if not masks_at(last, tinit, tfinal, delta, total):
        why = (f"the warm-up lasts to the last step (index {last}), so nothing is pruned; lower adapter.tinit"
               if last <= tinit else
               f"the last step (index {last}) re-applies no mask, so the optimizer revives pruned singular values; "
               f"set adapter.tfinal=1 (a final phase at the target budget) or adapter.deltaT=1")
        raise BadInput(f"{where}: {why}")


def orthogonal_penalty(model: torch.nn.Module, adapter_name: str = "default") -> torch.Tensor:
    """AdaLoRA's orthogonal regulariser R(P, Q) of every adapted matrix, as PEFT computes it.

    arXiv 2303.10512 defines R(P, Q) = ||P^T P - I||_F^2 + ||Q Q^T - I||_F^2, added to the training loss with a
    weight. PEFT (peft 0.21, `AdaLoraModel.forward`) and the authors' code (github.com/QingruZhang/AdaLoRA,
    `loralib/adalora.py: compute_orth_regu`) use the mean, over all P (`lora_B` [out, r]: P^T P is [r, r]) and
    all Q (`lora_A` [r, in]: Q Q^T is [r, r]), of the Frobenius norm, not squared: this is that figure, so that a
    weight means what it means in PEFT. PEFT keeps it inline in its forward (no function to call), hence this
    copy; `tests/test_adalora.py` checks that it equals what PEFT adds to a `.loss`.

    Args:
        model: the PEFT model (or the model it wraps, or a DDP wrapper of it).
        adapter_name: the AdaLoRA adapter's name.

    Returns:
        a scalar tensor with gradients to every `lora_A` and `lora_B`; 0 when there are none.
    """
    import torch
    from peft.utils.integrations import gather_params_ctx

    norms = []
    for name, p in model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and adapter_name in name:
            with gather_params_ctx(p, fwd_module=model) if p.shape == torch.Size([0]) else nullcontext():  # ZeRO-3
                cov = p @ p.T if "lora_A" in name else p.T @ p
            norms.append(torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, dtype=cov.dtype, device=cov.device)))
    return torch.stack(norms).mean() if norms else torch.zeros(())


def adalora_model(model: Any) -> Any:
    """The `peft.tuners.AdaLoraModel` inside a PEFT model (or a DDP wrapper of one), or None."""
    from peft.tuners import AdaLoraModel

    inner = getattr(getattr(model, "module", model), "base_model", None)
    return inner if isinstance(inner, AdaLoraModel) else None


@functools.cache
def trainer_classes() -> tuple[type, type]:
    """`(GRPOTrainer, AdaLoraGRPOTrainer)`: TRL's trainer and its AdaLoRA subclass, built on first use so that
    importing this module (the checks before any model loads) does not import transformers and TRL."""
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    class AdaLoraAllocate(TrainerCallback):
        """Calls AdaLoRA's budget allocation after every optimizer step: `AdaLoraModel.update_and_allocate(step)`,
        which updates the importance scores from the gradients still held and masks singular values (PEFT's
        docstring: "called in every training step after `loss.backward()` and before `zero_grad()`").
        transformers 5.23 fires `on_optimizer_step` after `optimizer.step()` and before `model.zero_grad()`, with
        `state.global_step` the index of that step from 0."""

        def on_optimizer_step(self, args, state, control, **kwargs):
            inner = adalora_model(kwargs.get("model"))
            if inner is not None:
                inner.update_and_allocate(state.global_step)

    class AdaLoraGRPOTrainer(GRPOTrainer):
        """TRL's `GRPOTrainer` running AdaLoRA as arXiv 2303.10512 defines it: `AdaLoraAllocate` re-allocates the
        rank budget after every optimizer step, and the loss is GRPO's plus `orth_reg_weight * orthogonal_penalty`.
        The penalty is divided by the gradient accumulation steps as GRPO's loss is (TRL scales its loss itself), so an
        optimizer step gets it once at its weight, as a supervised AdaLoRA step does; it is logged as
        `adalora/orth_penalty`. Same constructor as `GRPOTrainer` (`peft_config` an `AdaLoraConfig`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(AdaLoraAllocate())

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inner = adalora_model(model) or adalora_model(self.model)
            weight = inner.peft_config[inner.trainable_adapter_name].orth_reg_weight if inner is not None else 0.0
            if weight <= 0:
                return loss
            penalty = orthogonal_penalty(model, inner.trainable_adapter_name)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["adalora/orth_penalty"].append(penalty.item())
            return loss + weight * penalty / (self.current_gradient_accumulation_steps if mode == "train" else 1.0)

    return GRPOTrainer, AdaLoraGRPOTrainer


def trainer_class(cls: type, run: RunContext) -> type:
    """The trainer class of an AdaLoRA run (the `trainer_class` hook of `conf/adapter/adalora.yaml`'s `hooks`,
    `rlvr_cli.training.axes`): `AdaLoraGRPOTrainer`, TRL's `GRPOTrainer` (`cls`) with AdaLoRA's rank allocation and
    orthogonal penalty."""
    return trainer_classes()[1]


def summary_fields(model: Any, run: RunContext) -> dict[str, Any]:
    """summary.json's AdaLoRA keys at the end of a run (the `summary_fields` hook): `rank_summary`."""
    return rank_summary(model)


def rank_summary(model: Any) -> dict[str, Any]:
    """AdaLoRA's rank allocation at the end of a run, for summary.json; `{}` for other models.

    Returns:
        `adalora_rank_pattern`: adapted module name -> its rank (singular values kept by the last allocation,
        from PEFT's `rank_pattern`; every module at init_r when no allocation has happened);
        `adalora_rank_budget`: their sum; `adalora_initial_rank_budget`: init_r x modules;
        `adalora_target_rank_budget`: target_r x modules (PEFT's `RankAllocator.target_bgt`).
    """
    inner = adalora_model(model)
    if inner is None:
        return {}
    name = inner.trainable_adapter_name
    config = inner.peft_config[name]
    modules = [n.removesuffix(f".lora_E.{name}") for n, _ in inner.model.named_parameters()
               if n.endswith(f".lora_E.{name}")]
    # PEFT's keys: "<module>.lora_E.<adapter>", or "<module>.lora_E" once save_pretrained has rewritten them.
    kept = {k.replace(f".{name}", "").removesuffix(".lora_E"): int(sum(v)) for k, v in
            (config.rank_pattern or {}).items()}
    pattern = {m: kept.get(m, config.init_r) for m in modules}
    return {"adalora_rank_pattern": pattern, "adalora_rank_budget": sum(pattern.values()),
            "adalora_initial_rank_budget": config.init_r * len(modules),
            "adalora_target_rank_budget": config.target_r * len(modules)}
