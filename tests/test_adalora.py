"""AdaLoRA (arXiv 2303.10512) under GRPO prunes its rank budget and feels its orthogonal penalty, where a plain
`GRPOTrainer(peft_config=AdaLoraConfig(...))` silently trains fixed-rank LoRA (peft issues #1801, #1327).

Real tiny-random, real PEFT, real TRL: one run through rlvr's recipe and one through a plain GRPOTrainer, with
the same config and seed, so that the only difference is rlvr's glue (rlvr_cli/training/adalora.py)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CHARS, TINY
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import TrainerCallback

from rlvr_cli.core.compose import compose_run
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.models.loading import load_model
from rlvr_cli.training.adalora import orthogonal_penalty

#: A schedule that prunes within 3 optimizer steps (indices 0, 1, 2): step 0 scores importance, step 1 masks at
#: the cubic schedule's budget, step 2 = total_step - tfinal masks at the final budget, target_r x 14 matrices.
SCHEDULE = ["adapter=adalora", "adapter.r=12", "adapter.target_r=4", "adapter.tinit=0", "adapter.tfinal=1",
            "adapter.orth_reg_weight=0.5", "grpo.max_steps=3", "grpo.max_grad_norm=0", "sparsity=null", *CHARS]
WEIGHT = 0.5


class Probe(TrainerCallback):
    """Records, at the first optimizer step (before it), the gradients of every lora_A / lora_B and the gradient
    that the orthogonal penalty alone gives them; keeps the model at the end."""

    def __init__(self):
        self.grads, self.penalty_grads, self.model = {}, {}, None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            named = [(n, p) for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n]
            self.grads = {n: p.grad.detach().clone() for n, p in named}
            expected = torch.autograd.grad(WEIGHT * orthogonal_penalty(model), [p for _, p in named])
            self.penalty_grads = {n: g for (n, _), g in zip(named, expected, strict=True)}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def nonzero_ranks(model) -> dict[str, int]:
    """Module name (as in summary.json) -> number of singular values lora_E holds that are not 0."""
    return {n.removeprefix("base_model.model.").removesuffix(".lora_E.default"): int((p != 0).sum())
            for n, p in model.named_parameters() if n.endswith(".lora_E.default")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same AdaLoRA config trained by rlvr (`recipe.train`) and by a plain TRL GRPOTrainer."""
    from trl import GRPOTrainer

    from rlvr_cli.data.problems import prompt_dataset
    from rlvr_cli.training.recipe import check_inputs, train

    out = tmp_path_factory.mktemp("adalora")
    args = [*TINY, f"output_dir={out}", "run_name=rlvr", *SCHEDULE]
    rlvr = Probe()
    summary = train(compose_run(args), args, progress=False, callbacks=[rlvr])

    cfg = compose_run([*TINY, f"output_dir={out}", "run_name=plain", *SCHEDULE])
    inputs = check_inputs(cfg)
    model, tokenizer = load_model(cfg.model.name_or_path)
    plain = Probe()
    trainer = GRPOTrainer(model=model, reward_funcs=inputs.reward_funcs, args=inputs.args,
                          processing_class=tokenizer, peft_config=inputs.peft_config,
                          train_dataset=prompt_dataset(inputs.problems, None), callbacks=[plain])
    trainer.train()
    return summary, rlvr, plain


def test_grpo_prunes_the_rank_budget_below_the_initial_one_and_unevenly(runs):
    summary, rlvr, _ = runs
    assert summary["status"] == "completed", summary["reason"]
    pattern = summary["adalora_rank_pattern"]
    assert len(pattern) == 14  # q, k, v, o, gate, up, down in 2 layers: all-linear, as LoRA
    assert summary["adalora_initial_rank_budget"] == 12 * 14 and summary["adalora_target_rank_budget"] == 4 * 14
    assert summary["adalora_rank_budget"] == sum(pattern.values()) == 4 * 14 < 12 * 14
    assert len(set(pattern.values())) > 1, pattern  # the budget differs between matrices
    assert nonzero_ranks(rlvr.model) == pattern  # the trained model holds exactly the ranks summary.json gives
    # The saved adapter is the pruned one: PEFT drops the masked triplets (lora_E [rank, 1] per module).
    saved = load_file(f"{summary['weights_dir']}/adapter_model.safetensors")
    assert {k.removeprefix("base_model.model.").removesuffix(".lora_E"): v.shape[0]
            for k, v in saved.items() if k.endswith(".lora_E")} == pattern
    assert json.loads(open(f"{summary['weights_dir']}/adapter_config.json").read())["rank_pattern"]


def test_without_rlvrs_glue_grpo_trains_fixed_rank_lora(runs):
    """The silent failure: a plain GRPOTrainer never calls update_and_allocate; every rank stays init_r."""
    _, rlvr, plain = runs
    assert set(nonzero_ranks(plain.model).values()) == {12}
    assert nonzero_ranks(rlvr.model) != nonzero_ranks(plain.model)


def test_orthogonal_penalty_changes_the_gradients_of_p_and_q(runs):
    """Same seed, same completions: rlvr's A/B gradients are the plain run's plus orth_reg_weight x grad R(P, Q)."""
    _, rlvr, plain = runs
    assert rlvr.grads.keys() == plain.grads.keys() and len(rlvr.grads) == 2 * 14
    for name, grad in rlvr.grads.items():
        assert rlvr.penalty_grads[name].abs().max() > 0, name
        torch.testing.assert_close(grad - plain.grads[name], rlvr.penalty_grads[name], rtol=1e-4, atol=1e-7)


def test_orthogonal_penalty_is_what_peft_adds_to_a_loss():
    """`orthogonal_penalty` equals PEFT's own regulariser (added in AdaLoraModel.forward when there is a .loss)."""
    torch.manual_seed(0)
    model, _ = load_model("tiny-random")
    peft_model = get_peft_model(model, peft_config(compose_run(["adapter=adalora", "grpo.max_steps=5"]).adapter))
    ids = torch.randint(0, 1000, (2, 6))
    config = peft_model.peft_config["default"]
    config.orth_reg_weight = 0.0
    plain = peft_model(input_ids=ids, labels=ids).loss
    config.orth_reg_weight = WEIGHT
    with_penalty = peft_model(input_ids=ids, labels=ids).loss
    penalty = orthogonal_penalty(peft_model)
    assert penalty > 0
    torch.testing.assert_close(with_penalty - plain, WEIGHT * penalty)
