"""Every file of every config group composes and builds what its `_target_` names: optimizers over a tiny
`nn.Linear`, adapters into PEFT configs, rewards into functions, benchmarks into `Benchmark`s; and each
optimizer's analytic state (its `state` model) equals the state it allocates after one step."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from peft import PeftConfig

from rlvr_cli.core import schema
from rlvr_cli.core.compose import GROUPS, compose, compose_run, config_dir, group_options, validate
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.targets import check_option_file
from rlvr_cli.evaluation.benchmarks import BENCHMARKS, Benchmark, parse_benchmarks
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.optimizers.build import build_optimizer
from rlvr_cli.optimizers.state import STATE_MODELS, state_bytes, state_bytes_analytic, tensor_state
from rlvr_cli.sweeps.launch import LAUNCHERS, launcher_configs
from rlvr_cli.training.rewards import build_rewards, reward_function

#: Groups that train.yaml does not select by default: composed with `+group=option`.
EXTRA_GROUPS = ("reward", "benchmark")
NEEDS_CUDA = "adamw_8bit"


def _compose(group: str, option: str):
    """The run config with `group=option`; for a group rlvr instantiates whole, outside a run config (rewards,
    benchmarks), a config holding only that file's node: composed into a run config its `_target_` is refused
    (rlvr_cli/core/targets.py)."""
    if group in EXTRA_GROUPS:
        return OmegaConf.create({group: OmegaConf.load(config_dir() / group / f"{option}.yaml")})
    return compose([f"{group}={option}"])


def _linear_step(factory):
    """One step of an optimizer built by `factory` over a `Linear(16, 8)` (weight [8, 16], bias [8])."""
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8)
    opt = factory(model.parameters())
    model(torch.randn(4, 16)).square().mean().backward()
    opt.step()
    return opt, [tuple(p.shape) for p in model.parameters()]


def _skip_without_cuda_bnb(name: str) -> None:
    if name == NEEDS_CUDA and (not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None):
        pytest.skip(f"optimizer={name} needs CUDA and bitsandbytes")


@pytest.mark.parametrize("group,option", [(g, o) for g in (*GROUPS, *EXTRA_GROUPS) for o in group_options(g)])
def test_every_file_of_every_group_composes(group, option):
    if group in EXTRA_GROUPS:  # built whole by rlvr (one top-level, allowed _target_), never part of a run config
        prefixes = ("hydra.utils.get_method",) if group == "reward" else ("rlvr_cli.evaluation.benchmarks",)
        check_option_file(_compose(group, option)[group], prefixes)
        with pytest.raises(BadInput, match=f"{group}._target_="):
            compose([f"+{group}={option}"])
        return
    cfg = _compose(group, option)
    assert OmegaConf.select(cfg, group) is not None
    if not (group == "data" and option == "jsonl"):  # data.path is mandatory (???) for the generic JSONL option
        validate(cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_group_file_composes_against_its_schema(group, option):
    """Every key a shipped file sets is one its group's schema types (so a wrong type fails in `compose`), and the
    file's values pass the schema's types and ranges."""
    sch = schema.GROUP_SCHEMAS[group]
    path = config_dir() / group / f"{option}.yaml"
    written = OmegaConf.load(path)
    if path.read_text().startswith("# @package _global_"):  # sets top-level nodes too (the arithmetic demo: rewards)
        assert set(written) <= set(schema.schema_fields(schema.TrainSchema)), f"{group}/{option}.yaml"
        written = written[group]
    keys = set(written) - {"defaults"}  # a file may extend another of its group (zero3 extends zero2)
    assert keys <= set(schema.schema_fields(sch)), f"{group}/{option}.yaml: keys the schema does not type"
    if isinstance(written.get("hub"), DictConfig):
        assert set(written.hub) <= set(schema.schema_fields(schema.HubSchema))
    node = _compose(group, option)[group]
    assert schema.conform(node, sch) == node  # the files are already typed: nothing changes
    schema.check(node, sch)


@pytest.mark.parametrize("block", ["eval", "sparsity"])
def test_train_yaml_blocks_compose_against_their_schemas(block):
    sch = schema.GROUP_SCHEMAS[block]
    node = compose()[block]
    assert set(node) <= set(schema.schema_fields(sch))
    schema.check(schema.conform(node, sch), sch)
    top = {k for k in OmegaConf.load(config_dir() / "train.yaml") if k != "defaults"}
    assert top | set(GROUPS) <= set(schema.schema_fields(schema.TrainSchema))


@pytest.mark.parametrize("name", group_options("optimizer"))
def test_optimizer_files_instantiate_over_parameters(name):
    _skip_without_cuda_bnb(name)
    cfg = compose_run([f"optimizer={name}"]).optimizer
    opt, _ = _linear_step(build_optimizer(cfg))
    assert isinstance(opt, torch.optim.Optimizer) and opt.param_groups[0]["lr"] == cfg.lr


@pytest.mark.parametrize("name", [n for n in group_options("optimizer") if n != NEEDS_CUDA])
def test_analytic_state_equals_the_measured_state_after_one_step(name):
    opt, shapes = _linear_step(build_optimizer(compose_run([f"optimizer={name}"]).optimizer))
    assert state_bytes(opt) == state_bytes_analytic(name, shapes)


def test_every_state_model_has_a_memory_model():
    for kind in STATE_MODELS:
        per_element, per_tensor = tensor_state(kind, (8, 16), 4, {"momentum": 0.9})
        assert per_element >= 0 and per_tensor >= 0
    with pytest.raises(BadInput, match="no analytic memory model"):
        tensor_state("shampoo", (8, 16), 4, {})


@pytest.mark.parametrize("name", group_options("adapter"))
def test_adapter_files_instantiate_to_peft_configs(name):
    cfg = compose_run([f"adapter={name}"]).adapter
    built = peft_config(cfg)
    if cfg.target is None:
        assert built is None and name == "full"
        return
    assert isinstance(built, PeftConfig) and getattr(built, "r", None) == cfg.r and built.task_type == "CAUSAL_LM"
    assert type(built).__name__ == cfg.target.rsplit(".", 1)[-1]


@pytest.mark.parametrize("name", group_options("reward"))
def test_reward_files_instantiate_to_functions(name):
    func = instantiate(_compose("reward", name).reward)
    assert callable(func) and func is reward_function(name)
    assert func([[{"role": "assistant", "content": "so \\boxed{4}"}]], answer=["4"]) == [1.0]


def test_train_rewards_resolve_by_name_and_by_dotted_path():
    # train.yaml's rewards (a math data set); the arithmetic demo sets its own (issue 25: correctness_any)
    funcs, weights = build_rewards(compose(["data=gsm8k", "+rewards.conftest.completion_chars=0.5"]).rewards)
    assert [f.__name__ for f in funcs] == ["correctness_reward", "format_reward", "completion_chars"]
    assert weights == [1.0, 0.5, 0.5]
    funcs, weights = build_rewards(compose().rewards)
    assert [f.__name__ for f in funcs] == ["correctness_reward", "format_reward", "correctness_any_reward"]
    assert weights == [0.0, 0.0, 1.0]
    with pytest.raises(BadInput, match=r"^unknown reward 'chars'; valid rewards: correctness, correctness_any, "
                                       r"format, or a "):
        build_rewards({"chars": 1.0})
    with pytest.raises(BadInput, match="reward 'no_such_module.f': cannot import it"):
        build_rewards({"no_such_module.f": 1.0})


@pytest.mark.parametrize("name", group_options("benchmark"))
def test_benchmark_files_instantiate_to_benchmarks(name):
    b = instantiate(_compose("benchmark", name).benchmark)
    assert isinstance(b, Benchmark) and b.name == name and BENCHMARKS[name] == b


def _order(name: str) -> tuple[int, str]:
    """A benchmark's place in the default list, read from its file (`order`, default 100; ties by name)."""
    return OmegaConf.load(config_dir() / "benchmark" / f"{name}.yaml").get("order", 100), name


def test_every_benchmark_is_the_default_in_the_order_its_file_gives():
    assert parse_benchmarks(None) == list(BENCHMARKS) == sorted(group_options("benchmark"), key=_order)
    assert parse_benchmarks(None)[:2] == ["math500", "aime24"]  # the shipped files' own order


def test_launchers_come_from_the_launcher_group():
    files = sorted(p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml"))
    assert LAUNCHERS == ("basic", "submitit_local", "submitit_slurm")
    assert sorted(launcher_configs().values()) == sorted(["basic", *files])
