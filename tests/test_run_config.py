"""Issue 27, item 1: one typed run config below the CLI. `compose_run` composes, validates once and returns a frozen
`RunConfig`; every option file of every group becomes one, and back (`to_node`) without loss; what goes to a library
stays in its group's mapping; a key nothing reads is refused; no module below `cli/` takes a `DictConfig`."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import REPO

from rlvr_cli.core.compose import GROUPS, compose_run, group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.nodes import from_node, to_node
from rlvr_cli.core.run_config import RunConfig


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_is_typed_and_round_trips(group):
    """Each option file (the list comes from the folder) makes a RunConfig whose group is its dataclass, and
    `to_node` gives back a node that makes the same RunConfig."""
    for option in group_options(group):
        run = compose_run([f"{group}={option}"])
        assert isinstance(getattr(run, group), RunConfig.GROUPS[group]), (group, option)
        assert RunConfig.from_node(to_node(run)) == run, (group, option)


def test_the_config_is_frozen_and_replace_makes_a_copy():
    run = compose_run(["optimizer=adamw", "optimizer.lr=3e-4"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.optimizer.lr = 1.0
    other = run.replace(run_name="r1")
    assert other.run_name == "r1" and run.run_name is None and other.optimizer is run.optimizer


def test_library_fields_stay_in_their_groups_mapping():
    """The optimizer's constructor arguments, PEFT's fields and TRL's fields pass through, a `+key` included."""
    run = compose_run(["optimizer=adamw", "optimizer.lr=3e-4", "adapter=dora", "+grpo.top_k=5",
                       "+adapter.lora_bias=true"])
    assert run.optimizer.args == {"betas": [0.9, 0.999], "eps": 1e-8}
    assert run.optimizer.instantiable() == {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-4,
                                            "betas": [0.9, 0.999], "eps": 1e-8}
    assert run.optimizer.instantiable()["_target_"] == "torch.optim.AdamW" == run.optimizer.target
    assert run.adapter.peft["use_dora"] is True and run.adapter.peft["lora_bias"] is True
    assert "name" not in run.adapter.peft and run.adapter.r == 8
    assert run.grpo.fields["top_k"] == 5 and run.grpo.grpo_fields()["num_generations"] == run.grpo.num_generations


def test_absent_fields_take_the_defaults_written_beside_them():
    """`distributed=none` sets no timeout or machine rank; the dataclass's defaults fill them, so no module reads
    them with a fallback."""
    run = compose_run([])
    assert (run.distributed.timeout_s, run.distributed.machine_rank, run.distributed.main_process_port) == \
        (1800, 0, 29500)
    assert run.generation.server is None and not run.generation.use_vllm
    assert run.trial is None and run.eval.benchmarks == ()


def test_a_key_nothing_reads_is_refused_in_one_line():
    with pytest.raises(BadInput, match=r"logger\.colour is not a setting rlvr reads; drop it"):
        compose_run(["+logger.colour=blue"])
    with pytest.raises(BadInput, match=r"model needs model\.name_or_path"):
        from_node(RunConfig.GROUPS["model"], {}, "model")


def test_eval_benchmarks_from_a_shell_string_are_a_tuple():
    assert compose_run(["eval.benchmarks='gsm8k, math500'"]).eval.benchmarks == ("gsm8k", "math500")
    assert compose_run(["eval.benchmarks=[gsm8k,math500]"]).eval.benchmarks == ("gsm8k", "math500")


def test_no_module_below_the_commands_takes_a_dictconfig():
    """Composition and schema modules aside (they make the typed config), and the sweep job's own Hydra entry
    point (a `@hydra.main` task of `sweep_job.yaml`, not a run config)."""
    allowed = {"core/compose.py", "core/schema.py", "core/targets.py", "sweeps/job.py"}
    found = {str(p.relative_to(REPO / "rlvr_cli")) for p in (REPO / "rlvr_cli").rglob("*.py")
             if not p.is_relative_to(REPO / "rlvr_cli" / "cli") and re.search(r"\bDictConfig\b", p.read_text())}
    assert found <= allowed, sorted(found - allowed)


def test_the_checks_across_fields_sit_with_the_fields_and_hold_for_a_config_built_by_hand():
    """`Grpo` checks its batch of whole groups and the fields other settings own; `RunConfig` its run name and save
    format: the same one-line refusals through `compose_run` and through the constructors."""
    from rlvr_cli.core.run_config import Grpo

    with pytest.raises(BadInput, match="= 8 is not divisible by grpo.num_generations = 3"):
        Grpo(num_generations=3, max_steps=1)
    with pytest.raises(BadInput, match="= 8 is not divisible by grpo.num_generations = 3"):
        compose_run(["grpo.num_generations=3", "grpo.per_device_train_batch_size=8"])
    with pytest.raises(BadInput, match="grpo.bf16 is set through precision="):
        Grpo(num_generations=2, max_steps=1, fields={"bf16": True})
    run = compose_run([])
    with pytest.raises(BadInput, match="run_name must be one directory name"):
        run.replace(run_name="../x")
    with pytest.raises(BadInput, match="save_format=sparse_delta is for full fine-tuning"):
        compose_run(["adapter=lora", "save_format=sparse_delta"])


def test_a_fields_type_default_and_range_live_in_one_place_and_the_schema_follows_them():
    """The schema a composed config is checked against is derived from the run config's dataclasses: the same keys
    (the typed fields, then the typed library keys), each with the `Rule` written beside the field, so a setting is
    declared once (issue 27, item 1)."""
    from rlvr_cli.core import schema

    for name, cls in RunConfig.GROUPS.items():
        sch = schema.GROUP_SCHEMAS[name]
        rest = getattr(cls, "REST", None)
        own = [f for f in dataclasses.fields(cls) if f.name != rest]
        keys = [f.metadata.get("key", f.name) for f in own] + list(getattr(cls, "LIBRARY_KEYS", {}))
        assert schema.schema_fields(sch) == tuple(keys), name
        rules = {f.name: f.metadata.get("rule") for f in dataclasses.fields(sch)}
        for f in own:
            assert rules[f.metadata.get("key", f.name)] is f.metadata.get("rule"), (name, f.name)
        for key, lib in getattr(cls, "LIBRARY_KEYS", {}).items():
            assert rules[key] is lib.rule, (name, key)
    # a range written beside a field is the one a composed value meets, through the schema
    k = next(f for f in dataclasses.fields(RunConfig.GROUPS["eval"]) if f.name == "k")
    assert k.default == 4 and k.metadata["rule"].ge == 1
    with pytest.raises(BadInput, match=r"^eval\.k must be an integer >= 1 \(samples per problem\), got 0"):
        compose_run(["eval.k=0"])


def test_no_module_reads_a_library_mapping_with_a_fallback():
    """Below the commands, a library's mapping (`Adapter.peft`, `Optimizer.args`, `Grpo.fields`, `Generation.trl`,
    `VllmServer.args`) is handed on whole or read through a typed accessor of its class, never `.get(key, default)`
    in a module that uses it."""
    pattern = re.compile(r"\.(peft|args|fields|trl)\.get\(")
    found = [f"{p.relative_to(REPO / 'rlvr_cli')}:{n}" for p in (REPO / "rlvr_cli").rglob("*.py")
             if p.name != "run_config.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
