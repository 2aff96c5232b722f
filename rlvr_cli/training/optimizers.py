"""Optimizers built by rlvr from the `optimizer` config group.

Each `conf/optimizer/<name>.yaml` is a Hydra instantiation target (`_target_` plus `_partial_: true` and the
constructor's arguments, `lr` included; https://hydra.cc/docs/advanced/instantiate_objects/overview/), plus
three keys that are not constructor arguments (`META_KEYS`): `name`, `state` (the analytic memory model of
`rlvr_cli.analysis.memory`, one of its `STATE_MODELS`) and `requires_cuda`. Adding an optimizer is one such file.

TRL's `optim="sgd"` string builds plain SGD and ignores `optim_args`, so momentum, Nesterov or Lion's betas
would be silently dropped. rlvr instead hands the `Trainer` an `(optimizer class, kwargs)` pair through its
`optimizer_cls_and_kwargs` attribute, taken from the instantiated partial (`.func`, `.keywords`):
`Trainer.create_optimizer` then calls `cls(parameter_groups, **kwargs)` with the trainable parameters and
their weight-decay groups, after accelerate has wrapped the model, so the same path works under FSDP and
DeepSpeed. (Handing it the partial itself would not do: transformers treats any callable that is not an
`Optimizer` subclass as a factory and calls it with the whole model, without the weight-decay groups.)
Weight decay, scheduler, warm-up and clipping are trainer settings in the `grpo` group.

Three optimizers need the model, not just its parameters, and go through transformers' other form of
`optimizer_cls_and_kwargs`: a factory (anything that is not an `Optimizer` subclass), which
`Trainer.create_optimizer` calls as `factory()(model, **kwargs)`, still before accelerate or after FSDP wraps the
model as the optimizer path always does (`trainer_optimizer` picks it from the run config):

- LoRA+ (Hayou et al., arXiv 2402.12354; `adapter=loraplus`): PEFT's `create_loraplus_optimizer` over the
  optimizer group's class and arguments, B's learning rate `adapter.loraplus_lr_ratio` times A's (`LoraPlus`);
- LoRA-FA (Zhang et al., arXiv 2308.03303; `adapter=lorafa`): PEFT's `create_lorafa_optimizer`, which freezes A
  and steps B with AdamW on a projected gradient; the optimizer group must be `adamw`, whose `betas` and `eps`
  it takes (`LoraFA`);
- Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/; `optimizer=muon`): `torch.optim.Muon`
  on the 2-D hidden weight matrices and `torch.optim.AdamW` on the rest, as one optimizer (`MuonWithAdamW`,
  built by `MuonOverModel`, which sends the input embedding and output head to AdamW).

Weight decay (`grpo.weight_decay`) reaches them as an argument: the Trainer's weight-decay groups are built only
for an optimizer class.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig

from rlvr_cli.core import modes
from rlvr_cli.core.config import plain
from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.models.adapters import adapter_meta_model
from rlvr_cli.models.state import is_matrix, muon_matrices

#: Keys of an optimizer config that describe it and are not constructor arguments (stripped before instantiate).
META_KEYS = ("name", "state", "requires_cuda")


def constructor_config(cfg: DictConfig | dict) -> dict[str, Any]:
    """The part of an optimizer config that `hydra.utils.instantiate` builds: every key but `META_KEYS`."""
    container = plain(cfg)
    return {k: v for k, v in container.items() if k not in META_KEYS}


def build_optimizer(cfg: DictConfig) -> Any:
    """Instantiate an optimizer config: a `functools.partial` of the optimizer class with its arguments.

    Called with the parameters (or parameter groups) it returns the optimizer, e.g.
    `build_optimizer(cfg)(model.parameters())`. Checks `state` and `requires_cuda` first, so a bad optimizer
    fails before any model is loaded.

    Args:
        cfg: a composed `optimizer` group node (`compose([...]).optimizer`).

    Raises:
        BadInput: an unknown `state`, a CUDA-only optimizer without CUDA, a class that cannot be imported
            (for bitsandbytes the message says which extra to install), or an argument its constructor does not
            take.
    """
    from hydra.utils import instantiate

    from rlvr_cli.analysis.memory import check_state

    name = cfg.get("name", "?")
    check_state(name, cfg.get("state"))
    target = str(cfg.get("_target_"))
    if cfg.get("requires_cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"optimizer={name} needs a CUDA GPU (bitsandbytes); on CPU use optimizer=adamw")
    if not cfg.get("_partial_"):
        raise BadInput(f"optimizer={name}: conf/optimizer/{name}.yaml needs `_partial_: true` (the Trainer "
                       f"passes the parameters)")
    try:
        factory = instantiate(constructor_config(cfg), _convert_="all", _recursive_=False)  # see core/targets.py
        inspect.signature(factory.func).bind([], **factory.keywords)  # an unknown argument fails now, not in train
    except Exception as e:
        extra = " (pip install 'rlvr[gpu]')" if "bitsandbytes" in target else ""
        raise BadInput(f"optimizer={name}: cannot build {target}{extra}: {root_cause(e)}") from None
    return factory


def optimizer_cls_and_kwargs(cfg: DictConfig) -> tuple[type, dict[str, Any]]:
    """The optimizer class named by `cfg._target_` and its keyword arguments (learning rate included), for
    `Trainer.optimizer_cls_and_kwargs`; lists become tuples (`betas`).

    Weight decay is not among them: `Trainer.create_optimizer` puts `grpo.weight_decay` into the parameter groups
    (none on biases and norms).

    Raises:
        BadInput: as `build_optimizer`.
    """
    factory = build_optimizer(cfg)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in factory.keywords.items()}
    return factory.func, kwargs


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
    `rlvr_cli.models.state.muon_matrices`: the 2-D hidden matrices, not the input embedding or output head) by
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


class LoraPlus:
    """transformers optimizer factory for `adapter=loraplus` (LoRA+, Hayou et al., arXiv 2402.12354):
    `LoraPlus()(model, optimizer_cls=..., lr=..., loraplus_lr_ratio=..., weight_decay=..., **kwargs)` is PEFT's
    `peft.optimizers.create_loraplus_optimizer`: every LoRA B matrix (and 1-D adapter tensor) at
    `lr * loraplus_lr_ratio`, every A at `lr`, both with `optimizer_cls(**kwargs)` (any optimizer of the `optimizer`
    group); `weight_decay` (PEFT's `loraplus_weight_decay`) on all but biases and norms
    (https://huggingface.co/docs/peft/developer_guides/lora#lora-optimized-lora)."""

    def __call__(self, model: Any, *, optimizer_cls: type, lr: float, loraplus_lr_ratio: float,
                 weight_decay: float = 0.0, **kwargs: Any) -> torch.optim.Optimizer:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, optimizer_cls, lr=lr, loraplus_lr_ratio=loraplus_lr_ratio,
                                         loraplus_weight_decay=weight_decay, **kwargs)


class LoraFA:
    """transformers optimizer factory for `adapter=lorafa` (LoRA-FA, Zhang et al., arXiv 2308.03303):
    `LoraFA()(model, r=..., lora_alpha=..., lr=..., weight_decay=..., betas=..., eps=...)` is PEFT's
    `peft.optimizers.create_lorafa_optimizer`, which freezes every LoRA A (`requires_grad=False`) and steps each B
    with AdamW on the gradient projected through A (`(A A^T)^-1`, scaled by the layer's LoRA scaling), then sets
    `betas` and `eps` (PEFT fixes (0.9, 0.999) and 1e-6) to the `adamw` option's. `r` and `lora_alpha` are the
    adapter's (PEFT reads each layer's own scaling; they are its fallback). `state` is not PEFT's: the memory
    model of what is built (`lorafa`: AdamW's two moments for B, and a Python-int step, 0 bytes), read by
    `rlvr_cli.analysis.memory` from these keyword arguments."""

    def __call__(self, model: Any, *, r: int, lora_alpha: float, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 state: str = "lorafa") -> torch.optim.Optimizer:
        from peft.optimizers import create_lorafa_optimizer

        optimizer = create_lorafa_optimizer(model, r=r, lora_alpha=lora_alpha, lr=lr, weight_decay=weight_decay)
        for group in optimizer.param_groups:
            group.update(betas=tuple(betas), eps=eps)
        return optimizer


#: Values of an adapter file's `optimizer_factory` key: the factory that builds the run's optimizer.
ADAPTER_FACTORIES = {"loraplus": LoraPlus, "lorafa": LoraFA}
#: Constructor arguments of `torch.optim.AdamW` that LoRA-FA takes over (the rest would be silently ignored).
LORAFA_KEYS = ("lr", "betas", "eps")


def trainer_optimizer(cfg: DictConfig) -> tuple[Any, dict[str, Any]]:
    """`Trainer.optimizer_cls_and_kwargs` of a run: the optimizer class and its arguments
    (`optimizer_cls_and_kwargs`), or a factory over the model and its arguments where the optimizer needs the
    model: `LoraPlus` and `LoraFA` (the adapter file's `optimizer_factory`), `MuonOverModel` (`optimizer=muon`).
    Factories get `grpo.weight_decay` as `weight_decay`. Everything is checked here, before any model loads.

    Args:
        cfg: the composed run config (`optimizer`, `adapter`, `grpo`, `model`, `distributed` nodes).

    Raises:
        BadInput: as `optimizer_cls_and_kwargs`; an unknown `optimizer_factory`; LoRA-FA over another optimizer
            than `adamw`, with AdamW arguments it would ignore, or with `use_dora`; Muon or LoRA-FA under
            DeepSpeed ZeRO (it flattens parameters into 1-D partitions, which both cannot step); Muon with an
            adapter that trains no 2-D matrix (`is_matrix`).
    """
    cls, kwargs = optimizer_cls_and_kwargs(cfg.optimizer)
    adapter = cfg.get("adapter") or {}
    adapter_name, opt_name = adapter.get("name", "?"), cfg.optimizer.get("name", "?")
    factory = adapter.get("optimizer_factory")
    grpo = cfg.get("grpo") or {}
    weight_decay = grpo.get("weight_decay") or 0.0
    if factory is not None and factory not in ADAPTER_FACTORIES:
        raise BadInput(f"adapter={adapter_name}: unknown optimizer_factory {factory!r}; valid: "
                       f"{', '.join(ADAPTER_FACTORIES)}, or null")
    if cls is MuonWithAdamW or factory == "lorafa":
        if modes.backend(cfg.get("distributed")) == "deepspeed" or grpo.get("deepspeed"):
            what = "optimizer=muon" if cls is MuonWithAdamW else f"adapter={adapter_name} (LoRA-FA)"
            raise BadInput(f"{what} cannot run under DeepSpeed ZeRO, which steps flattened 1-D partitions: use "
                           f"distributed=ddp or distributed=fsdp")
    if cls is MuonWithAdamW:
        check_muon_matrices(cfg)
    if factory == "loraplus":
        return LoraPlus, {"optimizer_cls": cls, "loraplus_lr_ratio": adapter.get("loraplus_lr_ratio"),
                          "weight_decay": weight_decay, **kwargs}
    if factory == "lorafa":
        if cls is not torch.optim.AdamW:
            raise BadInput(f"adapter={adapter_name} trains with PEFT's LoRA-FA optimizer, an AdamW: use "
                           f"optimizer=adamw, not optimizer={opt_name}")
        ignored = sorted(set(kwargs) - set(LORAFA_KEYS))
        if ignored:
            raise BadInput(f"adapter={adapter_name}: LoRA-FA takes only {', '.join(LORAFA_KEYS)} from the "
                           f"optimizer; remove optimizer.{ignored[0]}")
        if adapter.get("use_dora"):
            raise BadInput(f"adapter={adapter_name}: LoRA-FA pairs each lora_A with its lora_B and cannot step "
                           f"DoRA's magnitude vector: set adapter.use_dora=false")
        return LoraFA, {"r": adapter.get("r"), "lora_alpha": adapter.get("lora_alpha"), "weight_decay": weight_decay,
                        "state": "lorafa", **kwargs}
    if cls is MuonWithAdamW:
        return MuonOverModel, {"weight_decay": weight_decay, **kwargs}
    return cls, kwargs


def check_muon_matrices(cfg: DictConfig) -> None:
    """Refuse `optimizer=muon` when the adapter trains no 2-D hidden matrix (`is_matrix`): its parameters would all
    go to AdamW (IA3, LN tuning and VeRA train vectors only; LoRA at r = 1 has rank-1 factors). Checked on the
    model built on the meta device (`rlvr_cli.models.adapters.adapter_meta_model`: its config only, no weights).

    Raises:
        BadInput: no such matrix, naming the adapter and the fix; or the model's config cannot be read.
    """
    if not muon_matrices(adapter_meta_model(cfg.model.name_or_path, cfg.adapter)):
        name = cfg.adapter.get("name", "?")
        raise BadInput(f"optimizer=muon: adapter={name} trains no 2-D matrix with both dimensions > 1 for Muon "
                       f"(only vectors); use optimizer=adamw, or an adapter with matrices such as adapter=lora with "
                       f"adapter.r >= 2")


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The `GRPOConfig` fields rlvr derives for the optimizer: `learning_rate` (from `optimizer.lr`) and
    `max_grad_norm` (from `grpo.max_grad_norm`, null turned into 0.0: transformers' "no clipping").

    The other trainer settings (`lr_scheduler_type`, `warmup_steps`, `weight_decay`) are `grpo` fields already.

    Args:
        cfg: the composed run config (`optimizer` and `grpo` nodes).
    """
    out: dict[str, Any] = {"learning_rate": cfg.optimizer.lr}
    grpo = cfg.get("grpo")
    if grpo is not None and "max_grad_norm" in grpo:
        out["max_grad_norm"] = 0.0 if grpo.max_grad_norm is None else grpo.max_grad_norm
    return out


def state_bytes(optimizer: Any) -> int:
    """Bytes held by an optimizer's state tensors (momenta, second moments, step counters).

    Measured, not computed: the sum of `numel * element_size` over every tensor in
    `optimizer.state`. Accepts accelerate's `AcceleratedOptimizer` wrapper.
    """
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)
    return sum(
        v.numel() * v.element_size()
        for state in inner.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )
