"""Issue 27, item 3: every axis behind one protocol (`rlvr_cli.training.axes`). A new adapter with training behaviour
of its own is its YAML and one module (tested with a throwaway file in a copied config tree and a module of hooks
that records each call, on a real tiny run); a new optimizer with an existing state model is one YAML; a `hooks`
value that cannot work is refused in one line before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CHARS, TINY

from rlvr_cli.core.compose import compose_run, group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.training import axes


def test_a_new_adapter_with_its_own_training_behaviour_is_its_yaml_and_one_module(own_conf, tmp_path, monkeypatch):
    from rlvr_cli.training.recipe import train

    (own_conf / "adapter" / "lora_probe.yaml").write_text(
        "defaults:\n  - lora\n  - _self_\n\nname: lora_probe\nhooks: hooks_probe\n")
    probe = tmp_path / "probe.jsonl"
    monkeypatch.setenv("RLVR_HOOKS_PROBE", str(probe))
    assert "lora_probe" in group_options("adapter")
    args = [*TINY, *CHARS, "adapter=lora_probe", f"output_dir={tmp_path / 'runs'}", "run_name=r", "sparsity=null"]
    summary = train(compose_run(args), args, progress=False)
    assert summary["status"] == "completed", summary.get("reason")
    events = [json.loads(line) for line in probe.read_text().splitlines()]
    assert [e["event"] for e in events] == ["check", "trainer_fields", "serve", "callbacks", "trainer_class",
                                            "after_model_load", "step", "step", "after_train", "on_save",
                                            "summary_fields", "serve ends"]
    seen = {e["event"]: e for e in events}
    assert seen["check"] == {"event": "check", "adapter": "lora_probe", "world_size": 1, "main": True}
    assert seen["callbacks"]["exists"] and seen["trainer_class"]["base"] == "GRPOTrainer"
    assert seen["after_model_load"]["model"].startswith("PeftModel") and seen["after_model_load"]["main"] is True
    assert seen["after_train"] == {"event": "after_train", "status": "completed", "step": 2}
    assert "adapter_model.safetensors" in seen["on_save"]["files"]  # after the adapter was saved
    assert summary["probe_trainable"] == summary["trainable_params"] > 0  # its summary field, in summary.json
    assert summary["probe_status_seen"] == "completed"  # after_train's keys, in summary.json
    written = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert written["probe_trainable"] == summary["probe_trainable"]


def test_the_shipped_options_with_training_behaviour_name_their_module():
    """AdaLoRA's schedule and Muon's check sit behind their files' `hooks`; every other option has none."""
    with_hooks = {}
    for group in axes.HOOK_GROUPS:
        for option in group_options(group):
            node = getattr(compose_run([f"{group}={option}"]), group)
            hooks = axes.option_hooks(group, node)
            if hooks is not None:
                with_hooks[f"{group}={option}"] = hooks.name.rsplit(" ", 1)[-1]
    assert with_hooks == {"optimizer=muon": "rlvr_cli.optimizers.muon", "adapter=adalora": "rlvr_cli.training.adalora"}


def test_a_new_optimizer_with_an_existing_state_model_is_one_yaml(own_conf):
    from rlvr_cli.analysis.memory import estimate
    from rlvr_cli.optimizers.build import trainer_optimizer

    (own_conf / "optimizer" / "adamw_wd.yaml").write_text(
        "defaults:\n  - adamw\n  - _self_\n\nname: adamw_wd\nweight_decay: 0.1\n")
    cfg = compose_run(["model=tiny-random", "optimizer=adamw_wd"])
    cls, kwargs = trainer_optimizer(cfg)
    assert cls.__name__ == "AdamW" and kwargs["weight_decay"] == 0.1
    assert [a.name for a in axes.run_axes(cfg)] == [a.name for a in axes.BUILT_IN]  # no hooks of its own
    rows = estimate("1e6", optimizers=["adamw_wd", "adamw"]).rows
    assert rows["adamw_wd"].optimizer_states == rows["adamw"].optimizer_states == 8_000_000  # AdamW's state model


@pytest.mark.parametrize("value, message", [
    ("not a module", "must be a module path such as rlvr_cli.training.adalora"),
    ("nosuchmodule_xyz", "cannot import it: No module named 'nosuchmodule_xyz'"),
    ("json", "defines none of check, trainer_fields, trainer_class, callbacks, serve, after_model_load, after_train, "
             "on_save, summary_fields"),
])
def test_a_hooks_value_that_cannot_work_is_one_line(own_conf, value, message):
    (own_conf / "adapter" / "lora_bad.yaml").write_text(
        f"defaults:\n  - lora\n  - _self_\n\nname: lora_bad\nhooks: {value!r}\n")
    with pytest.raises(BadInput, match="adapter=lora_bad: hooks") as e:
        axes.run_axes(compose_run(["model=tiny-random", "adapter=lora_bad"]))
    assert message in str(e.value)



def test_the_recipe_names_no_optimizer_or_adapter():
    """Issue 27, items 2 and 3: no name, import or string in the recipe's code (comments and docstrings aside) is
    an option of the optimizer or adapter group; what one option needs comes through `rlvr_cli.training.axes`."""
    import ast
    import re

    tree = ast.parse((Path(__file__).resolve().parents[1] / "rlvr_cli" / "training" / "recipe.py").read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.update(re.findall(r"\w+", node.value))
    assert {"GRPOTrainer", "axes", "trainer_optimizer"} <= words  # the walk sees the code
    options = {o for group in ("optimizer", "adapter") for o in group_options(group)} - {"full"}
    assert sorted(options & {w.lower() for w in words}) == []


def test_every_hook_is_given_the_runs_precision_and_process_counts(tmp_path):
    """The `RunContext`: a 2 x 2 run to launch (each machine's processes hold its first GPUs, what the vLLM server's
    GPUs are checked against), and the built-in axes in their order; outside a search the pruning axis adds
    nothing, and an hf generation starts no service."""
    from rlvr_cli.core.precision import resolve

    cfg = compose_run(["model=tiny-random", "distributed=ddp", "distributed.num_processes=2",
                   "distributed.num_machines=2", "distributed.main_process_ip=10.0.0.1"])
    run = axes.run_context(cfg)
    assert (run.world_size, run.local_processes, run.launched, run.main) == (4, 2, 1, True)
    assert run.precision == resolve(cfg.precision, cuda=False)
    assert [a.name for a in axes.BUILT_IN] == ["precision", "distributed", "generation", "adapter", "pruning"]
    pruning = next(a for a in axes.BUILT_IN if a.name == "pruning")
    pruning.check(run)  # no trial: no study to open
    assert pruning.callbacks(run, tmp_path) == []
    generation = next(a for a in axes.BUILT_IN if a.name == "generation")
    with generation.serve(run, tmp_path) as url:
        assert url is None and not list(tmp_path.iterdir())  # no server, no log
    assert axes.run_context(cfg, launched=4, main=False).local_processes == 2
