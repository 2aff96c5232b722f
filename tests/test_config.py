"""Config composition: every group option composes, overrides reach the right keys, bad ones fail early."""

import dataclasses
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from rlvr_cli.core import schema
from rlvr_cli.core.compose import GROUPS, compose, group_options, validate
from rlvr_cli.core.errors import BadInput


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose([f"{group}={option}"])
    assert OmegaConf.select(cfg, group) is not None
    if group == "optimizer":
        assert cfg.optimizer.name == option and cfg.optimizer.lr > 0
    if group == "data" and option == "jsonl":
        return  # data.path is mandatory (???) for the generic JSONL option
    validate(cfg)


def test_defaults_are_the_embedded_demo():
    cfg = compose()
    assert cfg.model.name_or_path == "smollm2-135m"
    names = (cfg.data.name, cfg.optimizer.name, cfg.adapter.name, cfg.logger.name)
    assert names == ("arithmetic", "sgd", "full", "wandb")
    assert cfg.optimizer.momentum == 0.0  # plain SGD, the paper's setting


def test_public_override_names_reach_their_keys():
    cfg = compose(["optimizer=adamw", "optimizer.lr=3e-6", "adapter=lora", "adapter.r=4", "adapter.alpha=8",
                   "grpo.max_steps=7", "grpo.num_generations=4", "grpo.max_completion_length=64",
                   "grpo.per_device_train_batch_size=12", "data=gsm8k", "data.path=/x.jsonl", "seed=5",
                   "output_dir=/tmp/o"])
    assert cfg.optimizer.lr == 3e-6 and cfg.adapter.r == 4 and cfg.adapter.alpha == 8
    assert (cfg.grpo.max_steps, cfg.grpo.num_generations, cfg.grpo.max_completion_length) == (7, 4, 64)
    assert cfg.grpo.per_device_train_batch_size == 12 and cfg.data.path == "/x.jsonl"
    assert cfg.seed == 5 and cfg.output_dir == "/tmp/o"


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLVR_DATA_DIR", str(tmp_path))
    assert compose(["data=math"]).data.data_dir == str(tmp_path)


@pytest.mark.parametrize("override,message", [
    ("optimizer=foo", "unknown optimizer 'foo'; valid options: adafactor, adagrad, adam, adamw, adamw_8bit, lion"),
    ("adapter=bar", "unknown adapter 'bar'; valid options: adalora, dora, full, ia3, ln_tuning, lora, lorafa, "
                    "loraplus, milora, miss, pissa, rslora, vera"),
    ("optimizer.lrr=1", "unknown key 'optimizer.lrr'"),
    ("seed=[", "cannot parse override"),
    ("optimizer.weight_decay=0.1", "optimizer.weight_decay is now grpo.weight_decay"),
])
def test_bad_overrides_name_the_value_and_the_fix(override, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[")) as e:
        compose([override])
    assert "\n" not in str(e.value)


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from rlvr_cli.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'train' in r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_public_override_passes_the_schema():
    cfg = compose(["optimizer=adamw", "optimizer.betas=[0.9,0.95]", "+optimizer.amsgrad=true", "adapter=lora",
                   "adapter.use_rslora=true", "+adapter.bias=lora_only", "+grpo.top_k=5", "+grpo.top_p=0.9",
                   "+rewards.a.b.c=1.0", "data=hub", "data.hub.id=openai/gsm8k"])
    assert list(cfg.optimizer.betas) == [0.9, 0.95] and cfg.optimizer.amsgrad is True
    assert "momentum" not in cfg.optimizer  # a key the file lacks stays absent: the schema adds nothing
    assert cfg.adapter.use_rslora is True and cfg.adapter.bias == "lora_only"
    assert (cfg.grpo.top_k, cfg.grpo.top_p) == (5, 0.9)  # any GRPOConfig field passes through to TRL
    assert cfg.rewards.a.b.c == 1.0
    validate(cfg)
    # rlvr reads every key of data.hub itself (it never handed `revision` to `datasets.load_dataset`): refused, not
    # silently dropped
    with pytest.raises(BadInput, match=r"data\.hub\.revision is not a setting rlvr reads; drop it"):
        validate(compose(["data=hub", "data.hub.id=openai/gsm8k", "+data.hub.revision=main"]))


def test_values_are_typed_by_the_schema():
    cfg = compose(["grpo.max_steps='7'", "optimizer.lr=1", "adapter=lora", "+rewards.x.y=2", "eval.limit=null"])
    assert cfg.grpo.max_steps == 7 and isinstance(cfg.grpo.max_steps, int)  # OmegaConf converts '7'
    assert isinstance(cfg.optimizer.lr, float) and isinstance(cfg.rewards.x.y, float)
    assert cfg.adapter.alpha == 16 and isinstance(cfg.adapter.alpha, int)  # a Number stays as written (PEFT: int)
    assert cfg.eval.limit is None and OmegaConf.is_struct(cfg)
    assert compose() == compose([]) and schema.conform(compose()) == compose()


@pytest.mark.parametrize("override,message", [
    ("seed=abc", "seed must be an integer >= 0 and <= 4294967295, got 'abc'; e.g. seed=0"),
    ("grpo.num_generations=2.5", "grpo.num_generations must be an integer >= 2 (GRPO compares completions within "
                                 "a group), got 2.5; e.g. grpo.num_generations=4"),
    ("optimizer.momentum=[0.9]", "optimizer.momentum must be a number >= 0, got [0.9]; e.g. optimizer.momentum=0.9"),
    ("logger.tags=5", "logger.tags must be a list of strings, got 5"),
    ("grpo.gradient_checkpointing=maybe", "grpo.gradient_checkpointing must be true or false, got 'maybe'"),
    ("+rewards.a.b=x", "rewards.a.b must be a number (its weight), got 'x'; e.g. rewards.a.b=1.0"),
    ("eval=null", "eval must be a mapping of keys to values, got None"),
    ("grpo=null", "grpo is a config group: pick one of its options, default; e.g. grpo=default"),
])
def test_a_value_of_the_wrong_type_fails_in_compose(override, message):
    with pytest.raises(BadInput) as e:
        compose([override])
    assert str(e.value) == message or str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["seed=-1"], "seed must be an integer >= 0 and <= 4294967295, got -1; e.g. seed=0"),
    (["~optimizer.lr"], "optimizer.lr must be a finite number > 0, got None"),
    (["~grpo.num_generations"], "grpo.num_generations must be an integer >= 2"),
    (["optimizer=adamw", "optimizer.betas=[0.9,1.0]"], "optimizer.betas must be two numbers in [0, 1)"),
    (["adapter=lora", "~adapter.r"], "adapter.r (adapter rank) must be an integer >= 1, got None"),
    (["adapter=lora", "adapter.dropout=1"], "adapter.dropout must be a number >= 0 and < 1, got 1.0"),
    (["eval.top_p=1.5"], "eval.top_p must be a number > 0 and <= 1, got 1.5"),
    (["grpo.max_grad_norm=-1"], "grpo.max_grad_norm must be a number >= 0 or null (0 or null: no clipping)"),
    (["save_format=zip"], "save_format must be one of full, sparse_delta, got 'zip'"),
])
def test_ranges_beside_the_fields_fail_in_validate(overrides, message):
    cfg = compose(overrides)  # the types are right: compose accepts it
    with pytest.raises(BadInput, match="^" + re.escape(message)):
        validate(cfg)


def test_validate_types_a_config_built_by_hand():
    cfg = compose()
    raw = OmegaConf.to_container(cfg)
    raw["grpo"]["max_steps"] = "abc"
    with pytest.raises(BadInput, match=r"^grpo.max_steps must be an integer >= 1"):
        validate(OmegaConf.create(raw))


def test_rules_name_a_type_and_a_range_for_every_checked_field():
    for group, sch in schema.GROUP_SCHEMAS.items():
        for name in schema.schema_fields(sch):
            r = dataclasses.fields(sch)[schema.schema_fields(sch).index(name)].metadata.get("rule")
            if r is not None:  # a rule has something to check
                assert r.check or r.choices or {r.ge, r.gt, r.le, r.lt} != {None}, f"{group}.{name}"
