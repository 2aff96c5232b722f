"""The PEFT methods of conf/adapter/ as their papers define them: the same target modules as LoRA, PiSSA and
MiLoRA built from the principal / minor singular components and saved so that they apply to the original base,
a round trip from training to `rlvr eval RUN` for every adapter file, and `rlvr memory` counts equal to the
measured ones. Real PEFT, real GRPO runs on tiny-random, SmolLM2's architecture on the meta device."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import CHARS, TINY
from peft import IA3Config, LNTuningConfig, LoraConfig, MissConfig, VeraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import TrainerCallback

from rlvr_cli.analysis.memory import estimate
from rlvr_cli.core.compose import compose_run, group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.models import adapters
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.milora import init as milora_init
from rlvr_cli.models.parameters import count_params, meta_model
from rlvr_cli.models.sources import load_eval_model, resolve_model

ADAPTERS = group_options("adapter")
#: Token ids [1, 32] on which logits are compared (any ids of the SmolLM2 vocabulary).
IDS = torch.arange(100, 132)[None]
#: GRPO on tiny-random with a reward that gives gradients and a learning rate at which every adapter moves.
# fp32: the round trip below compares logits to 1e-5 (bf16 autocast, precision=auto here, moves them by ~4e-3)
MOVING = [*TINY, *CHARS, "optimizer=adamw", "optimizer.lr=0.01", "sparsity=null", "precision=fp32"]


def _adapter(*overrides: str):
    return compose_run(["model=tiny-random", *overrides]).adapter


def _adapted(model) -> set[str]:
    """Names (as in the base model) of the modules a PEFT model adapted."""
    return {re.sub(r"^base_model\.model\.", "", n) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def _norms(model) -> set[str]:
    return {n for n, m in model.named_modules() if type(m).__name__.endswith(("Norm", "LayerNorm"))}


def _build_on_meta(model_name: str, *overrides: str):
    return adapters.build_on_meta(meta_model(model_name), adapters.peft_config(_adapter(*overrides)))


# --------------------------------------------------------------------------------------- item 1: the files


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_adapter_file_builds_its_peft_config_with_the_public_knobs(name):
    """`adapter.r` / `adapter.alpha` reach PEFT where the method has a rank / a scale, and are refused where not."""
    cfg = _adapter(f"adapter={name}")
    built = adapters.peft_config(cfg)
    has = adapters.knobs(cfg)
    assert (built is None) == (name == "full")
    if "r" in has:
        assert cfg.r >= 1
        assert adapters.peft_config(_adapter(f"adapter={name}", "adapter.r=4")).r == 4
    else:
        assert cfg.r is None
        with pytest.raises(BadInput, match=rf"^adapter={name} has no rank: .*got adapter.r=4; drop adapter.r") as e:
            adapters.peft_config(_adapter(f"adapter={name}", "adapter.r=4"))
        assert "\n" not in str(e.value)
    if "alpha" in has:
        assert adapters.peft_config(_adapter(f"adapter={name}", "adapter.alpha=3")).lora_alpha == 3
    else:
        with pytest.raises(BadInput, match=rf"^adapter={name} has no scale: "):
            adapters.peft_config(_adapter(f"adapter={name}", "adapter.alpha=3"))


def test_the_methods_are_the_peft_classes_their_papers_name():
    kinds = {name: adapters.peft_config(_adapter(f"adapter={name}")) for name in
             ("pissa", "milora", "miss", "ia3", "ln_tuning", "vera")}
    assert isinstance(kinds["pissa"], LoraConfig) and kinds["pissa"].init_lora_weights == "pissa"
    assert isinstance(kinds["milora"], LoraConfig) and kinds["milora"].init_lora_weights is True
    assert _adapter("adapter=milora").post_init == "rlvr_cli.models.milora.init"
    assert isinstance(kinds["miss"], MissConfig) and isinstance(kinds["ia3"], IA3Config)
    assert isinstance(kinds["ln_tuning"], LNTuningConfig) and isinstance(kinds["vera"], VeraConfig)
    assert {"r", "alpha"} <= adapters.knobs(_adapter("adapter=pissa"))
    assert adapters.knobs(_adapter("adapter=miss")) == {"r", "dropout"}
    assert adapters.knobs(_adapter("adapter=ia3")) == adapters.knobs(_adapter("adapter=full")) == set()


# --------------------------------------------------------------------------------------- item 2: same targets


@pytest.mark.parametrize("model_name", ["tiny-random", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_every_method_adapts_the_modules_lora_adapts(model_name):
    """All linear layers of the decoder for every method that allows it (VeRA, MiSS and IA3 included, not PEFT's
    per-method defaults); every norm layer for LN tuning; IA3 rescales the inputs of the MLP projections."""
    lora = _adapted(_build_on_meta(model_name, "adapter=lora"))
    linear = {n for n, m in meta_model(model_name).named_modules()
              if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")}
    assert lora == linear
    for name in ADAPTERS:
        if name == "full":
            continue
        model = _build_on_meta(model_name, f"adapter={name}")
        if isinstance(model.peft_config["default"], LNTuningConfig):
            assert _adapted(model) == _norms(meta_model(model_name)), name
        else:
            assert _adapted(model) == lora, name
    ia3 = _build_on_meta(model_name, "adapter=ia3")
    feedforward = {n for n, m in ia3.named_modules() if isinstance(m, BaseTunerLayer) and m.is_feedforward}
    assert {n.split(".")[-1] for n in feedforward} == {"gate_proj", "up_proj", "down_proj"}
    assert len(feedforward) == 3 * meta_model(model_name).config.num_hidden_layers


@pytest.mark.parametrize("name", [n for n in ADAPTERS if n != "full"])
def test_the_targets_are_overridable_per_run(name):
    targets = "[input_layernorm]" if name == "ln_tuning" else "[q_proj,v_proj]"
    model = _build_on_meta("tiny-random", f"adapter={name}", f"adapter.target_modules={targets}")
    assert {n.split(".")[-1] for n in _adapted(model)} == set(targets.strip("[]").split(","))


# --------------------------------------------------------------------------------------- item 4: PiSSA, MiLoRA


@pytest.mark.parametrize("name,part", [("pissa", "principal"), ("milora", "minor")])
def test_pissa_and_milora_start_from_their_singular_components(name, part):
    """s B A is exactly W's rank-r part over its r largest (PiSSA, arXiv 2404.02948) or r smallest (MiLoRA, arXiv
    2406.09044) singular triplets, and the base keeps W - s B A: the model is unchanged at step 0."""
    base, _ = load_model("tiny-random")
    with torch.no_grad():
        before = base.eval()(input_ids=IDS).logits
    originals = {n: m.weight.detach().double().clone() for n, m in base.named_modules()
                 if isinstance(m, torch.nn.Linear)}
    cfg = _adapter(f"adapter={name}", "adapter.r=4", "adapter.alpha=8")
    model = get_peft_model(base, adapters.peft_config(cfg))
    adapters.initialize(model, cfg, Path("unused"), save=False)
    layers = {re.sub(r"^base_model\.model\.", "", n): m for n, m in model.named_modules()
              if isinstance(m, BaseTunerLayer)}
    assert len(layers) == 14
    for n, m in layers.items():
        w = originals[n]  # [out, in]
        delta = m.scaling["default"] * m.lora_B["default"].weight.double() @ m.lora_A["default"].weight.double()
        torch.testing.assert_close(m.get_base_layer().weight.double() + delta, w, atol=1e-5, rtol=0)
        u, sv, vh = torch.linalg.svd(w, full_matrices=False)
        k = slice(0, 4) if part == "principal" else slice(len(sv) - 4, len(sv))
        torch.testing.assert_close(delta, u[:, k] @ torch.diag(sv[k]) @ vh[k], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, before, atol=1e-5, rtol=0)


def test_milora_init_is_what_the_post_init_key_applies():
    base, _ = load_model("tiny-random")
    model = get_peft_model(base, adapters.peft_config(_adapter("adapter=milora")))
    assert milora_init(model) == 14
    with pytest.raises(BadInput, match=r"adapter.r=64 is larger than the smaller side"):
        milora_init(get_peft_model(load_model("tiny-random")[0], adapters.peft_config(
            _adapter("adapter=milora", "adapter.r=64"))))


def test_save_converted_keeps_the_trained_model_and_applies_to_the_original_base(tmp_path):
    """PEFT's conversion (save_pretrained with path_initial_model_for_weight_conversion) leaves the live model as it
    was and writes a rank-2r LoRA that, merged into the ORIGINAL base, gives the trained model."""
    cfg = _adapter("adapter=milora", "adapter.r=4")
    model = get_peft_model(load_model("tiny-random")[0], adapters.peft_config(cfg))
    initial = adapters.initialize(model, cfg, tmp_path / adapters.INITIAL_DIR)
    assert (initial / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # "training"
        model.eval()
        trained = model(input_ids=IDS).logits
    assert adapters.save_converted(model, tmp_path / "final", cfg, initial)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, trained, atol=0, rtol=0)  # untouched
    assert list(model.peft_config) == ["default"]
    saved = json.loads((tmp_path / "final" / "adapter_config.json").read_text())
    assert (saved["r"], saved["lora_alpha"], saved["init_lora_weights"]) == (8, 32, True)
    from peft import PeftModel

    merged = PeftModel.from_pretrained(load_model("tiny-random")[0], str(tmp_path / "final")).merge_and_unload()
    with torch.no_grad():
        assert (merged.eval()(input_ids=IDS).logits - trained).abs().max() <= 1e-5
    assert not adapters.save_converted(model, tmp_path / "other", _adapter("adapter=lora"), initial)


@pytest.mark.parametrize("overrides,message", [
    (["distributed=zero3", "distributed.num_processes=2"], "distributed=zero3 shards them: use distributed=ddp"),
    # issue 20: "under DeepSpeed" is the ZeRO stage of the config, not the mode's name
    (["distributed=zero2", "distributed.num_processes=2", "distributed.deepspeed.zero_optimization.stage=3"],
     "distributed=zero2 shards them: use distributed=ddp"),
    (["grpo.beta=0.04"], "with grpo.beta=0.04: TRL's KL reference"),
    (["adapter.use_dora=true"], "which DoRA's magnitude vector does not follow"),
])
def test_residual_base_adapters_refuse_what_they_cannot_do(overrides, message):
    for name in ("pissa", "milora"):
        if "use_dora" in overrides[0] and name == "pissa":
            continue
        cfg = compose_run(["model=tiny-random", f"adapter={name}", *overrides])
        with pytest.raises(BadInput, match=re.escape(message)):
            adapters.check_run(cfg)
    adapters.check_run(compose_run(["model=tiny-random", "adapter=lora", *overrides]))  # plain LoRA: fine


# ----------------------------------------------------------------------- items 5 and 8: one run per adapter


class FinalLogits(TrainerCallback):
    """The trained model's logits on `IDS` ([1, 32, vocab], fp32) at the end of training, before the recipe saves
    anything."""

    logits: torch.Tensor | None = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=IDS).logits.detach().clone()
        model.train(was_training)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short GRPO run per case, run once per module: overrides -> (summary, final logits)."""
    from rlvr_cli.training.recipe import train

    cache: dict[tuple[str, ...], tuple[dict, torch.Tensor]] = {}
    out = tmp_path_factory.mktemp("adapters")

    def run(*overrides: str):
        if overrides not in cache:
            capture = FinalLogits()
            args = [*MOVING, f"output_dir={out}", f"run_name=run{len(cache)}", *overrides]
            summary = train(compose_run(args), args, progress=False, callbacks=[capture])
            assert summary["status"] == "completed", summary.get("reason")
            cache[overrides] = (summary, capture.logits)
        return cache[overrides]

    return run


@pytest.fixture(scope="module")
def base_logits():
    model, _ = load_model("tiny-random")
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


#: Every adapter file, and PiSSA with a randomized SVD: PEFT re-runs the init of a plain-saved PiSSA adapter on load,
#: so only a converted save survives a randomized (seed-dependent) SVD.
#: The methods whose saving or training differs from LoRA's (a converted save, a rank schedule, a frozen A) run in
#: `make test`; the others, whose save is PEFT's plain one, under `make test-slow` (one GRPO run each).
SPECIAL = ("pissa", "milora", "adalora", "lorafa")


def _slow_unless_special(name: str, *values: object) -> object:
    return pytest.param(*values, marks=() if name in SPECIAL else pytest.mark.slow)


ROUND_TRIPS = [_slow_unless_special(n, (f"adapter={n}",)) for n in ADAPTERS] + [
    pytest.param(("adapter=pissa", "adapter.init_lora_weights=pissa_niter_2"))]


@pytest.mark.parametrize("overrides", ROUND_TRIPS, ids=lambda o: "+".join(x.split("=")[1] for x in o))
def test_rlvr_eval_loads_the_model_that_was_trained(overrides, trained, base_logits):
    """Item 5: `rlvr eval RUN` (resolve_model + load_eval_model: the adapter merged into the original base) gives
    the trained model's logits, fp32, to 1e-5; and training moved the model, so the comparison can fail."""
    summary, logits = trained(*overrides)
    assert (logits - base_logits).abs().max() > 1e-3  # the adapter moved
    source = resolve_model(summary["run_dir"])
    assert source.kind == ("run-full" if overrides == ("adapter=full",) else "run-adapter")
    model, _ = load_eval_model(source, with_tokenizer=False)
    with torch.no_grad():
        evaluated = model.eval()(input_ids=IDS).logits
    assert evaluated.dtype == torch.float32
    assert (evaluated - logits).abs().max() <= 1e-5
    cfg = _adapter(*overrides)
    if adapters.residual_base(cfg):  # saved converted: a plain LoRA of rank 2r on the original base
        saved = json.loads((Path(summary["run_dir"]) / "final" / "adapter_config.json").read_text())
        assert saved["init_lora_weights"] is True and saved["r"] == 2 * cfg.r
        assert (Path(summary["run_dir"]) / adapters.INITIAL_DIR / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("name", [_slow_unless_special(n, n) for n in ADAPTERS])
def test_rlvr_memory_counts_what_training_measured(name, trained):
    """Item 8 on tiny-random: `rlvr memory tiny-random --adapter NAME` equals summary.json's measured counts."""
    summary, _ = trained(f"adapter={name}")
    est = estimate("tiny-random", ["adamw"], adapter=name)
    assert (est.n_trainable, est.n_params) == (summary["trainable_params"], summary["total_params"])
    assert summary["trainable_params"] < summary["total_params"] or name == "full"


def _formula(config, model, frozen_a: bool = False) -> int:
    """Trainable parameters of a PEFT config on a model, from each method's paper (per adapted Linear(in, out)):
    LoRA r(in+out) (arXiv 2106.09685), DoRA + out (2402.09353), AdaLoRA r(in+out) + r (2303.10512), VeRA r + out
    (2310.11454), MiSS r x out (2409.15371), IA3 out, or in for a feed-forward layer (2205.05638); LN tuning: the
    norm layers' parameters (2312.11420); no adapter: every parameter. `frozen_a`: LoRA-FA (2308.03303) trains B
    only, r x out."""
    if config is None:
        return count_params(model)[1]
    if isinstance(config, LNTuningConfig):
        return sum(p.numel() for n in _norms(model) for p in model.get_submodule(n).parameters())
    linear = [(n, m.in_features, m.out_features) for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    r = getattr(config, "init_r", None) or getattr(config, "r", None)
    per = {"LoraConfig": lambda i, o: (0 if frozen_a else r * i) + r * o + (o if config.use_dora else 0),
           "AdaLoraConfig": lambda i, o: r * (i + o) + r,  # P [out, r], Lambda [r, 1], Q [r, in]
           "VeraConfig": lambda i, o: r + o,
           "MissConfig": lambda i, o: r * o}
    if isinstance(config, IA3Config):
        return sum(i if re.fullmatch(config.feedforward_modules, n) else o for n, i, o in linear)
    kind = type(config).__name__
    assert kind in per, f"no parameter formula for {kind}: add one"
    return sum(per[kind](i, o) for _, i, o in linear)


@pytest.mark.parametrize("name", ADAPTERS)
def test_rlvr_memory_counts_on_smollm2_follow_each_papers_formula(name):
    """Item 8 on SmolLM2-135M's architecture (meta device): `rlvr memory smollm2-135m --adapter NAME --r R` trains
    exactly what the method's formula gives (at --r 4 where the method has a rank; the files' own ranks, and the
    totals, are compared with measured runs on tiny-random above)."""
    cfg = _adapter(f"adapter={name}")
    model = meta_model("smollm2-135m")
    for r in [4] if "r" in adapters.knobs(cfg) else [None]:
        config = adapters.peft_config(_adapter(f"adapter={name}", *([f"adapter.r={r}"] if r else [])))
        est = estimate("smollm2-135m", ["adamw"], adapter=name, r=r)
        assert est.n_trainable == _formula(config, model, cfg.optimizer_factory == "lorafa"), (name, r)
