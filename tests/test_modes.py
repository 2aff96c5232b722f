"""A distributed mode and a generation backend are one file each: their traits live in conf/distributed/ and
conf/generation/ (`rlvr_cli.core.modes`), the option lists come from the config directory, and a new file is a new
choice, accepted by every check without a line of code."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rlvr_cli.core import modes, schema
from rlvr_cli.core.compose import compose, compose_run, config_dir, group_options, validate
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.modes import Distributed
from rlvr_cli.training import parallelism

GROUP_DIRS = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")


@pytest.mark.parametrize("group", GROUP_DIRS)
def test_every_group_file_names_itself_by_its_stem(group):
    for path in sorted((config_dir() / group).glob("*.yaml")):
        node = OmegaConf.load(path)
        if "name" in node:  # benchmark/reward files name what they build, under _target_ arguments
            assert node.name == path.stem, f"{path}: name {node.name!r} is not its file name"


def test_the_option_lists_are_the_files():
    assert group_options("distributed") == ["ddp", "fsdp", "none", "zero1", "zero2", "zero3"]
    rule = schema.GROUP_SCHEMAS["distributed"].__dataclass_fields__["name"].metadata["rule"]
    assert tuple(rule.choices) == tuple(group_options("distributed"))
    rule = schema.GROUP_SCHEMAS["generation"].__dataclass_fields__["name"].metadata["rule"]
    assert tuple(rule.choices) == tuple(group_options("generation"))


@pytest.mark.parametrize("name,expected", [
    ("none", set()), ("ddp", set()), ("fsdp", {"weights", "gradients", "optimizer_state"}),
    ("zero1", {"optimizer_state"}), ("zero2", {"optimizer_state", "gradients"}),
    ("zero3", {"weights", "gradients", "optimizer_state"}),
])
def test_what_each_mode_shards_comes_from_its_file(name, expected):
    dist = compose_run([f"distributed={name}"]).distributed
    assert modes.sharded(dist) == expected
    assert modes.shards_weights(dist) == ("weights" in expected)
    assert modes.multi_process(dist) == (name != "none")


def test_under_deepspeed_the_zero_stage_decides_not_the_name():
    dist = compose_run(["distributed=zero2", "distributed.deepspeed.zero_optimization.stage=3"]).distributed
    assert modes.zero_stage(dist) == 3 and modes.shards_weights(dist)
    files = parallelism.accelerate_config(dist, processes=2, cuda=False)
    assert files["deepspeed_config"]["zero3_init_flag"] is True
    dist = compose_run(["distributed=zero3", "distributed.deepspeed.zero_optimization.stage=1"]).distributed
    assert modes.sharded(dist) == {"optimizer_state"}


def test_bad_traits_are_one_line():
    with pytest.raises(BadInput, match="distributed.shards names 'weight'; it lists"):
        modes.sharded(Distributed(backend="ddp", shards=("weight",)))
    with pytest.raises(BadInput, match="stage must be 0, 1, 2 or 3, got 4"):
        modes.zero_stage(Distributed(backend="deepspeed", deepspeed={"zero_optimization": {"stage": 4}}))
    with pytest.raises(BadInput, match="distributed.backend must be one of none, ddp, fsdp, deepspeed"):
        validate(compose(["distributed=ddp", "distributed.num_processes=2", "distributed.backend=horovod"]))


def test_a_new_distributed_mode_is_one_file(own_conf):
    (own_conf / "distributed" / "zero2_offload.yaml").write_text(
        "# ZeRO-2 with its optimizer state in CPU memory\n"
        "defaults:\n  - zero2\n  - _self_\n\nname: zero2_offload\noffload_optimizer: true\n")
    assert "zero2_offload" in group_options("distributed")
    cfg = compose_run(["model=tiny-random", "distributed=zero2_offload", "distributed.num_processes=2"])
    parallelism.check(cfg)
    assert modes.sharded(cfg.distributed) == {"optimizer_state", "gradients"}
    zero = parallelism.trainer_fields(cfg.distributed, cuda=False)["deepspeed"]["zero_optimization"]
    assert zero["stage"] == 2 and zero["offload_optimizer"]["device"] == "cpu"
    assert parallelism.accelerate_config(cfg.distributed, 2, cuda=False)["distributed_type"] == "DEEPSPEED"
    from rlvr_cli.models import adapters

    adapters.check_run(compose_run(["model=tiny-random", "adapter=pissa", "distributed=zero2_offload"]))  # whole
    from rlvr_cli.analysis.planner import Plan, check_plan, shard_parts

    check_plan(Plan(num_gpus=4, shard="zero2_offload", offload="optimizer"))  # rlvr memory --shard takes it too
    assert shard_parts("zero2_offload") == {"optimizer_states", "master_weights", "gradients"}


def test_a_new_generation_backend_is_one_file(own_conf):
    (own_conf / "generation" / "vllm_big.yaml").write_text(
        "defaults:\n  - vllm_colocate\n  - _self_\n\nname: vllm_big\nvllm_gpu_memory_utilization: 0.6\n")
    cfg = compose_run(["model=tiny-random", "generation=vllm_big"])
    assert modes.uses_vllm(cfg.generation) and modes.vllm_mode(cfg.generation) == "colocate"
    assert not modes.starts_server(cfg.generation)
    from rlvr_cli.training import generation

    fields = generation.grpo_fields(cfg.generation)
    assert fields["use_vllm"] is True and fields["vllm_gpu_memory_utilization"] == 0.6


def test_an_unknown_mode_lists_the_files():
    with pytest.raises(BadInput, match="ddp.*fsdp.*none.*zero1.*zero2.*zero3"):
        compose(["distributed=horovod"])
