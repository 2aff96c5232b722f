"""Each optimizer option builds the optimizer it names, with its hyper-parameters, and keeps the state it should."""

import pytest
import torch
from omegaconf import OmegaConf

from rlvr_cli.core.compose import compose, compose_run, config_dir, group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.nodes import from_node
from rlvr_cli.core.run_config import Optimizer
from rlvr_cli.optimizers.build import build_optimizer, optimizer_cls_and_kwargs, trainer_kwargs
from rlvr_cli.optimizers.state import STATE_MODELS, state_bytes

# option -> (class name, hyper-parameters that must reach it, fp32 state tensors per parameter tensor)
EXPECTED = {
    "sgd": ("SGD", {"momentum": 0.0, "nesterov": False}, 0),
    "sgd_momentum": ("SGD", {"momentum": 0.9, "nesterov": False}, 1),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}, 1),
    "adamw": ("AdamW", {"betas": (0.9, 0.999), "eps": 1e-8}, 2),
    "adam": ("Adam", {"betas": (0.9, 0.999), "eps": 1e-8}, 2),
    "rmsprop": ("RMSprop", {"alpha": 0.99, "momentum": 0.0}, 1),
    "adagrad": ("Adagrad", {"eps": 1e-10}, 1),
    "lion": ("Lion", {"betas": (0.9, 0.99)}, 1),
    "adafactor": ("Adafactor", {"relative_step": False, "scale_parameter": False}, None),
}


def _step(opt_name: str, **overrides):
    cfg = compose_run([f"optimizer={opt_name}", *(f"optimizer.{k}={v}" for k, v in overrides.items())]).optimizer
    cls, kwargs = optimizer_cls_and_kwargs(cfg)
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8)  # weight [8, 16], bias [8]
    opt = cls(model.parameters(), **kwargs)
    model(torch.randn(4, 16)).square().mean().backward()
    opt.step()
    return cfg, opt


@pytest.mark.parametrize("name", EXPECTED)
def test_optimizer_has_its_class_and_hyperparameters(name):
    cls_name, hyper, per_param = EXPECTED[name]
    cfg, opt = _step(name, lr=0.125)
    assert type(opt).__name__ == cls_name
    group = opt.param_groups[0]
    assert group["lr"] == 0.125
    for key, value in hyper.items():
        assert group[key] == value, key
    if per_param is not None:
        # fp32 buffers the size of each parameter (momentum, exp_avg, exp_avg_sq...), besides scalar step counters
        big = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
        assert len(big) == per_param * 2
        assert sum(v.numel() * 4 for v in big) == per_param * (8 * 16 + 8) * 4


def test_sgd_keeps_no_state_and_adamw_two_tensors_per_parameter():
    _, sgd = _step("sgd")
    assert state_bytes(sgd) == 0
    _, adamw = _step("adamw")
    for state in adamw.state.values():
        assert {"exp_avg", "exp_avg_sq"} <= set(state)
    # 8 bytes per parameter (m and v in fp32) plus a 4-byte step counter per parameter tensor
    assert state_bytes(adamw) == 8 * (8 * 16 + 8) + 2 * 4


def test_adafactor_factors_the_second_moment_of_matrices():
    _, opt = _step("adafactor")
    weight_state = next(s for s in opt.state.values() if "exp_avg_sq_row" in s)
    assert weight_state["exp_avg_sq_row"].shape == (8,) and weight_state["exp_avg_sq_col"].shape == (16,)


def test_scheduler_warmup_and_clipping_go_to_the_trainer():
    cfg = compose_run(["optimizer=adamw", "grpo.lr_scheduler_type=cosine", "grpo.warmup_steps=3",
                       "grpo.max_grad_norm=null", "grpo.weight_decay=0.01"])
    assert trainer_kwargs(cfg) == {"learning_rate": 1e-5, "max_grad_norm": 0.0}
    assert [cfg.grpo.grpo_fields()[k] for k in ("lr_scheduler_type", "warmup_steps", "weight_decay")] == ["cosine", 3,
                                                                                                        0.01]
    kwargs = optimizer_cls_and_kwargs(cfg.optimizer)[1]
    assert "weight_decay" not in kwargs and kwargs["lr"] == 1e-5  # the Trainer puts it into the parameter groups
    assert trainer_kwargs(compose_run([]))["max_grad_norm"] == 1.0


@pytest.mark.parametrize("key", ["weight_decay", "lr_scheduler_type", "warmup_steps", "max_grad_norm"])
def test_old_trainer_keys_under_optimizer_name_their_new_place(key):
    for override in (f"optimizer.{key}=1", f"+optimizer.{key}=1"):
        with pytest.raises(BadInput, match=rf"^optimizer\.{key} is now grpo\.{key} .*write grpo\.{key}=VALUE$"):
            compose([override])


def test_optimizer_files_hold_constructor_arguments_and_declared_meta_keys_only():
    """Nothing but `_target_`, `_partial_`, `Optimizer`'s typed fields and arguments the class's constructor takes."""
    import inspect

    from hydra.utils import get_class

    for name in group_options("optimizer"):
        raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "optimizer" / f"{name}.yaml"))
        assert raw["_partial_"] is True and raw["state"] in STATE_MODELS and raw["name"] == name, name
        if name == "adamw_8bit":
            continue  # bitsandbytes may be missing
        params = inspect.signature(get_class(raw["_target_"]).__init__).parameters
        built = from_node(Optimizer, raw, "optimizer").instantiable()
        assert set(built) - {"_target_", "_partial_"} <= set(params), name


def test_build_optimizer_is_a_partial_over_the_parameters():
    factory = build_optimizer(compose_run(["optimizer=nesterov", "optimizer.lr=0.5"]).optimizer)
    opt = factory(torch.nn.Linear(2, 2).parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"] and opt.param_groups[0]["lr"] == 0.5


def test_unknown_state_model_fails_before_any_model_loads():
    cfg = compose_run(["optimizer=adamw", "optimizer.state=shampoo"]).optimizer
    with pytest.raises(BadInput, match="optimizer=adamw: unknown state model 'shampoo'.*valid: sgd, adam"):
        optimizer_cls_and_kwargs(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal only shows without a GPU")
def test_adamw_8bit_is_refused_on_cpu():
    with pytest.raises(BadInput, match="optimizer=adamw_8bit needs a CUDA GPU"):
        optimizer_cls_and_kwargs(compose_run(["optimizer=adamw_8bit"]).optimizer)
