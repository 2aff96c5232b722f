"""Muon for GRPO (`optimizer=muon`): `MuonWithAdamW` runs torch's Muon on the hidden 2-D matrices
(`rlvr_cli.models.parameters.muon_matrices`) and AdamW on every other parameter, as one optimizer a `Trainer` steps;
`MuonOverModel` is the factory `rlvr_cli.optimizers.build.trainer_optimizer` hands the model to. Muon: Jordan et al.,
https://kellerjordan.github.io/posts/muon/; torch.optim.Muon: https://docs.pytorch.org/docs/stable/generated/torch.optim.Muon.html
"""

from __future__ import annotations

from typing import Any

import torch

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_config import RunConfig
from rlvr_cli.models.adapters import adapter_meta_model
from rlvr_cli.models.parameters import is_matrix, muon_matrices


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the 2-D hidden weight matrices and AdamW on every other parameter, as one optimizer.

    Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) orthogonalises the momentum of each
    weight matrix with Newton-Schulz iterations; `torch.optim.Muon` implements it and refuses tensors that are not
    2-D, and the method is meant for hidden layers only: embeddings, the output head, norms and biases take AdamW
    (the split of Jordan's reference code and of torch's `Muon` docs). Each part is a real `torch.optim.Muon` /
    `torch.optim.AdamW`; this class holds both, shares one `state` between them and lists their parameter groups
    as its own (Muon's first), so that learning-rate schedulers, gradient clipping, `zero_grad`, `state_dict` and
    accelerate's wrapper see one optimizer.

    Which part a parameter goes to: a group's `use_muon` key (`MuonOverModel` sets it, knowing the model), else its
    shape (`is_matrix`). State (`rlvr_cli.analysis.memory`, state model `muon`): a `momentum_buffer` the size of
    each Muon matrix, no step counter; AdamW's `exp_avg`, `exp_avg_sq` and a 0-d `step` for each other tensor.

    Args:
        params: parameters, or parameter groups (dicts with `params` and per-group options such as `lr`,
            `weight_decay`, `use_muon`).
        lr: Muon's learning rate, before `adjust_lr_fn`.
        weight_decay: decoupled weight decay of both parts (groups may override it).
        momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn: `torch.optim.Muon`'s arguments
            (`adjust_lr_fn`: None or `original`, Jordan's sqrt(max(1, rows/cols)) scaling; `match_rms_adamw`,
            0.2 * sqrt(max(rows, cols)), from "Muon is Scalable for LLM Training", arXiv 2502.16982, so that Muon
            can take AdamW's learning rate).
        adamw_lr: AdamW's learning rate; None: each group's `lr` (Muon's).
        adamw_betas, adamw_eps: AdamW's `betas` and `eps`.

    Raises:
        ValueError: no parameter for Muon (no 2-D matrix with both dimensions > 1), or what either constructor
            raises (a negative learning rate, an unknown `adjust_lr_fn`).
    """

    def __init__(self, params: Any, lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None, adamw_lr: float | None = None,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        muon_groups, adamw_groups = [], []
        for group in groups:
            options = {k: v for k, v in group.items() if k not in ("params", "use_muon")}
            flag = group.get("use_muon")
            muon = [p for p in group["params"] if (flag if flag is not None else is_matrix(p.shape))]
            rest = [p for p in group["params"] if not (flag if flag is not None else is_matrix(p.shape))]
            if muon:
                muon_groups.append({**options, "params": muon})
            if rest:
                adamw_groups.append({**options, "params": rest,
                                     "lr": adamw_lr if adamw_lr is not None else options.get("lr", lr)})
        if not muon_groups:
            raise ValueError("Muon got no 2-D matrix with both dimensions > 1 to update (the rest goes to AdamW)")
        self.parts: list[torch.optim.Optimizer] = [torch.optim.Muon(
            muon_groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
            ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)]
        if adamw_groups:
            self.parts.append(torch.optim.AdamW(adamw_groups, lr=adamw_lr if adamw_lr is not None else lr,
                                                betas=tuple(adamw_betas), eps=adamw_eps, weight_decay=weight_decay))
        super().__init__([g for part in self.parts for g in part.param_groups], {})
        self._link()

    def _link(self) -> None:
        """Point each part at its slice of `self.param_groups` and at `self.state` (again after
        `load_state_dict`, which replaces both)."""
        start = 0
        for part in self.parts:
            part.param_groups = self.param_groups[start:start + len(part.param_groups)]
            part.state = self.state
            start += len(part.param_groups)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """`torch.optim.Optimizer.load_state_dict`, then re-link the two parts to the loaded groups and state."""
        super().load_state_dict(state_dict)
        self._link()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Muon step on the matrices and one AdamW step on the rest; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss


def muon_param_groups(model: Any, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """The trainable parameters of `model` in up to four groups: Muon or AdamW (`use_muon`; Muon takes
    `rlvr_cli.models.parameters.muon_matrices`: the 2-D hidden matrices, not the input embedding or output head) by
    decay or not (`weight_decay` on the parameters the Trainer decays, `Trainer.get_decay_parameter_names`:
    none on biases and norms). Empty groups are left out; tied weights come once."""
    from transformers import Trainer

    hidden = {id(p) for p in muon_matrices(model)}
    decay = set(Trainer.get_decay_parameter_names(None, model))  # the Trainer's rule; its body does not use self
    groups = {(m, d): {"params": [], "use_muon": m, "weight_decay": weight_decay if d else 0.0}
              for m in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[(id(p) in hidden, name in decay)]["params"].append(p)
    return [g for g in groups.values() if g["params"]]


class MuonOverModel:
    """transformers optimizer factory for `optimizer=muon`: `Trainer.create_optimizer` calls
    `MuonOverModel()(model, **kwargs)`, which builds `MuonWithAdamW` over `muon_param_groups(model, weight_decay)`.
    `kwargs` are `MuonWithAdamW`'s arguments."""

    def __call__(self, model: Any, weight_decay: float = 0.0, **kwargs: Any) -> MuonWithAdamW:
        return MuonWithAdamW(muon_param_groups(model, weight_decay), **kwargs)


def check_muon_matrices(cfg: RunConfig) -> None:
    """Refuse `optimizer=muon` when the adapter trains no 2-D hidden matrix (`is_matrix`): its parameters would all
    go to AdamW (IA3, LN tuning and VeRA train vectors only; LoRA at r = 1 has rank-1 factors). Checked on the
    model built on the meta device (`rlvr_cli.models.adapters.adapter_meta_model`: its config only, no weights).

    Raises:
        BadInput: no such matrix, naming the adapter and the fix; or the model's config cannot be read.
    """
    if not muon_matrices(adapter_meta_model(cfg.model.name_or_path, cfg.adapter)):
        name = cfg.adapter.name
        raise BadInput(f"optimizer=muon: adapter={name} trains no 2-D matrix with both dimensions > 1 for Muon "
                       f"(only vectors); use optimizer=adamw, or an adapter with matrices such as adapter=lora with "
                       f"adapter.r >= 2")


def check(run: Any) -> None:
    """The `check` hook of `conf/optimizer/muon.yaml`'s `hooks` (`rlvr_cli.training.axes`; `run` is its
    `RunContext`): `check_muon_matrices` on the run's config.

    Raises:
        BadInput: as `check_muon_matrices`.
    """
    check_muon_matrices(run.cfg)
