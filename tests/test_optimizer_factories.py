"""LoRA+, LoRA-FA and Muon: optimizers built from the model through `Trainer.create_optimizer` (transformers'
factory form of `optimizer_cls_and_kwargs`), each checked on what a real GRPO run on tiny-random built and did:
B's learning rate `loraplus_lr_ratio` times A's (LoRA+, arXiv 2402.12354); A bit-identical and B trained
(LoRA-FA, arXiv 2308.03303); Muon on the hidden matrices and AdamW on the rest, with the measured optimizer state
equal to the analytic one (`rlvr memory`)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import TrainerCallback

from rlvr_cli.analysis.memory import estimate
from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import is_matrix, muon_matrices
from rlvr_cli.optimizers.build import LoraFA, LoraPlus, trainer_optimizer
from rlvr_cli.optimizers.muon import MuonOverModel, MuonWithAdamW
from rlvr_cli.optimizers.state import state_bytes, state_bytes_analytic


class Probe(TrainerCallback):
    """Keeps the optimizer the Trainer built, and copies of the trainable weights (and of every `lora_A`, which
    LoRA-FA freezes) at the start and at the end of training, by name."""

    def __init__(self):
        self.optimizer = self.model = None
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}

    @staticmethod
    def _copy(model) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad or "lora_A" in n}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.optimizer, self.model, self.before = optimizer, model, self._copy(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = self._copy(model)


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it


def _lr_by_name(model, optimizer) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in _inner(optimizer).param_groups for p in g["params"] if id(p) in names}


@pytest.fixture(scope="module")
def tiny():
    """The real tiny-random model (fp32), loaded once; tests use deep copies."""
    return load_model("tiny-random")[0]


def _peft(tiny, *overrides: str):
    from peft import get_peft_model

    cfg = compose_run(["model=tiny-random", *overrides])
    return cfg, get_peft_model(copy.deepcopy(tiny), peft_config(cfg.adapter))


def _backward(model) -> None:
    ids = torch.tensor([[1, 17, 42, 99, 7, 3]])  # [B=1, L=6]
    model(input_ids=ids, labels=ids).loss.backward()


# ------------------------------------------------------------------------------------------------------ LoRA+


def test_loraplus_in_a_grpo_run_gives_b_ratio_times_a_learning_rate(run_tiny, chars_reward):
    probe = Probe()
    summary = run_tiny("adapter=loraplus", "adapter.loraplus_lr_ratio=4", "optimizer=sgd_momentum",
                       "optimizer.lr=0.05", "grpo.max_steps=1", *chars_reward, name="loraplus", callbacks=[probe])
    assert summary["status"] == "completed", summary.get("reason")
    opt = _inner(probe.optimizer)
    assert type(opt) is torch.optim.SGD and {g["momentum"] for g in opt.param_groups} == {0.9}  # the base optimizer
    lrs = _lr_by_name(probe.model, probe.optimizer)
    a = {n: lr for n, lr in lrs.items() if "lora_A" in n}
    b = {n: lr for n, lr in lrs.items() if "lora_B" in n}
    assert len(a) == len(b) == 14 and len(lrs) == 28  # 2 layers x 7 linear modules, nothing else trains
    assert set(a.values()) == {0.05} and set(b.values()) == {0.2}
    assert summary["optimizer_state_bytes"] == summary["optimizer_state_bytes_analytic"] > 0  # one momentum each


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "lion", "adafactor", "muon"])
def test_loraplus_works_over_any_optimizer_of_the_group_with_the_default_ratio(tiny, optimizer):
    cfg, model = _peft(tiny, "adapter=loraplus", f"optimizer={optimizer}", "optimizer.lr=0.001")
    factory, kwargs = trainer_optimizer(cfg)
    assert factory is LoraPlus and kwargs["loraplus_lr_ratio"] == 16  # the LoRA+ paper's recommendation
    opt = factory()(model, **kwargs)  # what Trainer.create_optimizer does with a factory
    assert type(opt).__name__ == {"adamw": "AdamW", "sgd": "SGD", "lion": "Lion", "adafactor": "Adafactor",
                                  "muon": "MuonWithAdamW"}[optimizer]
    lrs = _lr_by_name(model, opt)
    assert {lr for n, lr in lrs.items() if "lora_A" in n} == {0.001}
    assert {lr for n, lr in lrs.items() if "lora_B" in n} == {0.016}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    _backward(model)
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)


# ------------------------------------------------------------------------------------------------------ LoRA-FA


def test_lorafa_in_a_grpo_run_keeps_a_bit_identical_and_trains_b(run_tiny, chars_reward, tiny):
    probe = Probe()
    summary = run_tiny("adapter=lorafa", "optimizer=adamw", "optimizer.lr=0.01", *chars_reward,
                       name="lorafa", callbacks=[probe])
    assert summary["status"] == "completed" and summary["global_step"] == 2, summary.get("reason")
    assert type(_inner(probe.optimizer)).__name__ == "LoraFAOptimizer"
    a = [n for n in probe.before if "lora_A" in n]
    b = [n for n in probe.before if "lora_B" in n]
    assert len(a) == len(b) == 14
    assert all(torch.equal(probe.before[n], probe.after[n]) for n in a)  # bit-identical
    assert all(not torch.equal(probe.before[n], probe.after[n]) for n in b)  # every B moved
    assert not any(p.requires_grad for n, p in probe.model.named_parameters() if "lora_A" in n)
    # Trainable: the B matrices only; state: AdamW's two moments for each, none for A (PEFT's step is an int).
    b_numel = sum(probe.after[n].numel() for n in b)
    assert summary["trainable_params"] == b_numel
    assert summary["optimizer_state_bytes"] == summary["optimizer_state_bytes_analytic"] == 2 * 4 * b_numel
    est = estimate("tiny-random", adapter="lorafa")  # `rlvr memory tiny-random --adapter lorafa`
    assert list(est.rows) == ["adamw"] and est.n_trainable == b_numel
    assert est.rows["adamw"].optimizer_states == summary["optimizer_state_bytes"]


def test_lorafa_takes_the_betas_and_eps_of_the_adamw_option(tiny):
    cfg, model = _peft(tiny, "adapter=lorafa", "optimizer=adamw", "optimizer.betas=[0.8,0.95]",
                       "optimizer.eps=1e-7", "grpo.weight_decay=0.01")
    factory, kwargs = trainer_optimizer(cfg)
    assert factory is LoraFA
    opt = factory()(model, **kwargs)
    (group,) = opt.param_groups
    assert (group["betas"], group["eps"], group["weight_decay"], group["lr"]) == ((0.8, 0.95), 1e-7, 0.01, 1e-5)


@pytest.mark.parametrize("overrides, message", [
    (["optimizer=sgd"], "adapter=lorafa trains with PEFT's LoRA-FA optimizer, an AdamW: use optimizer=adamw"),
    (["optimizer=adamw", "+optimizer.amsgrad=true"], "LoRA-FA takes only lr, betas, eps from the optimizer; "
                                                     "remove optimizer.amsgrad"),
    (["optimizer=adamw", "adapter.use_dora=true"], "set adapter.use_dora=false"),
])
def test_lorafa_refuses_what_it_would_ignore(overrides, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        trainer_optimizer(compose_run(["model=tiny-random", "adapter=lorafa", *overrides]))


# ------------------------------------------------------------------------------------------------------ Muon


def test_muon_in_a_full_grpo_run_steps_hidden_matrices_and_adamw_the_rest(run_tiny, chars_reward, tiny):
    probe = Probe()
    summary = run_tiny("optimizer=muon", "optimizer.lr=0.01", "grpo.weight_decay=0.1", *chars_reward, name="muon",
                       callbacks=[probe])
    assert summary["status"] == "completed", summary.get("reason")
    opt = _inner(probe.optimizer)
    assert type(opt) is MuonWithAdamW and [type(p).__name__ for p in opt.parts] == ["Muon", "AdamW"]
    model = probe.model
    hidden = {id(p) for p in muon_matrices(model)}
    embedding = model.get_input_embeddings().weight
    assert embedding is model.get_output_embeddings().weight and id(embedding) not in hidden  # tied, to AdamW
    assert len(hidden) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    for group in opt.parts[0].param_groups:  # Muon: the hidden matrices, a momentum buffer each, weight decay
        assert group["weight_decay"] == 0.1 and group["adjust_lr_fn"] == "match_rms_adamw"
        assert all(id(p) in hidden and set(opt.state[p]) == {"momentum_buffer"} for p in group["params"])
    adamw = [p for g in opt.parts[1].param_groups for p in g["params"]]
    assert any(p is embedding for p in adamw) and all(id(p) not in hidden for p in adamw)
    assert all(set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"} for p in adamw)
    decay = {id(p) for g in opt.parts[1].param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    assert decay == {id(embedding)}  # norms take no decay, as the Trainer's own groups
    moved = [n for n, p in model.named_parameters() if id(p) in hidden and not torch.equal(probe.before[n], p)]
    assert len(moved) == 14
    # measured state == analytic, in the run and in `rlvr memory tiny-random --optimizer muon`
    assert summary["optimizer_state_bytes"] == summary["optimizer_state_bytes_analytic"] > 0
    row = estimate("tiny-random", ["muon", "adamw"]).rows
    assert row["muon"].optimizer_states == summary["optimizer_state_bytes"] < row["adamw"].optimizer_states


def test_muon_over_an_adapter_sends_its_vectors_to_adamw(tiny):
    cfg, model = _peft(tiny, "adapter=dora", "optimizer=muon", "optimizer.lr=0.01")
    factory, kwargs = trainer_optimizer(cfg)
    assert factory is MuonOverModel
    opt = factory()(model, **kwargs)
    muon = [p for g in opt.parts[0].param_groups for p in g["params"]]
    adamw = [p for g in opt.parts[1].param_groups for p in g["params"]]
    assert all(is_matrix(p.shape) for p in muon) and len(muon) == 28  # lora_A, lora_B
    assert all(p.ndim == 1 for p in adamw) and len(adamw) == 14  # DoRA's magnitude vectors
    _backward(model)
    opt.step()
    trainable = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    assert state_bytes(opt) == state_bytes_analytic("muon", trainable) == (
        sum(p.numel() for p in muon) * 4 + sum(p.numel() * 8 + 4 for p in adamw))


def test_muon_state_dict_round_trip_resumes_identically():
    """`load_state_dict` replaces the groups and the state: both parts must follow (accelerate reloads it too)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    copy_ = copy.deepcopy(net)
    x = torch.randn(5, 8)

    def step(model, opt):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    first = MuonWithAdamW(net.parameters(), lr=0.02, adamw_lr=0.01)
    step(net, first)
    second = MuonWithAdamW(copy_.parameters(), lr=0.5, adamw_lr=0.5)  # other values, replaced by the load
    copy_.load_state_dict(net.state_dict())
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # a copy: torch loads state tensors as they are
    assert [g["lr"] for g in second.param_groups] == [0.02, 0.01]
    assert all(part.state is second.state for part in second.parts)
    step(net, first)
    step(copy_, second)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), copy_.parameters(), strict=True))


@pytest.mark.parametrize("adapter", ["vera", "ia3", "ln_tuning"])
def test_muon_is_refused_for_adapters_without_a_matrix(adapter):
    """Muon's check is its option's `hooks` (`rlvr_cli.optimizers.muon.check`), run with every axis's checks."""
    from rlvr_cli.training.axes import run_axes, run_context

    cfg = compose_run(["model=tiny-random", "optimizer=muon", f"adapter={adapter}"])
    with pytest.raises(BadInput, match=rf"^optimizer=muon: adapter={adapter} trains no 2-D matrix"):
        for axis in run_axes(cfg):
            axis.check(run_context(cfg))


def test_muon_state_from_a_bare_count_is_a_marked_lower_bound():
    from rlvr_cli.analysis.memory import breakdown

    b = breakdown(1_000_000, "muon")
    assert b.optimizer_states == 4_000_000 and not b.exact and "lower bound" in b.note


# ------------------------------------------------------------------------------------------------ under DDP


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ["optimizer=muon", "optimizer.lr=0.01"],
    ["adapter=loraplus", "optimizer=adamw"],
    ["adapter=lorafa", "optimizer=adamw"],
], ids=["muon", "loraplus", "lorafa"])
def test_factories_build_through_the_trainer_on_two_ddp_ranks(tmp_path, overrides):
    """torchrun, 2 ranks of DDP over gloo: the factory runs on each rank inside `Trainer.create_optimizer`, and
    each rank holds the whole optimizer state, equal to the analytic figure."""
    from conftest import CHARS
    from test_distributed import _launch, _one_run

    proc = _launch(tmp_path, *overrides, *CHARS, "run_name=factory")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, summary = _one_run(tmp_path)
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["distributed"] == "ddp"
    states = summary["optimizer_state_bytes_per_rank"]
    assert states[0] == states[1] == summary["optimizer_state_bytes_analytic"] > 0
