"""Update sparsity on constructed tensors, in real GRPO runs and through `rlvr sparsity`; sparse-delta checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback
from typer.testing import CliRunner

from rlvr_cli.analysis.sparsity import compare, count_changes, layer_index, module_type, update_ranks
from rlvr_cli.cli.main import app
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import read_metrics
from rlvr_cli.models import sparse_delta
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import state_dict

runner = CliRunner()


# --- counting, on tensors whose answer is known -------------------------------------------------------------

def test_tolerance_edge_is_unchanged_and_beyond_it_is_changed():
    base = torch.zeros(6, dtype=torch.float64)
    target = torch.tensor([0.0, 0.25, 0.5, 0.5 + 2**-40, 0.75, -0.0], dtype=torch.float64)
    c = count_changes(base, target, tolerance=0.5)
    assert (c.n, c.exact, c.tol) == (6, 4, 2)  # -0.0 == 0.0; |diff| == tolerance is unchanged
    assert count_changes(base, target, tolerance=0.0).tol == c.exact  # tolerance 0 is exact


def test_bf16_cast_hides_small_fp32_updates():
    base = torch.ones(5)
    target = torch.tensor([1.0, 1 + 5e-6, 1 + 2e-5, 1 + 1e-3, 1.01])
    c = count_changes(base, target, tolerance=1e-5)
    assert (c.exact, c.tol) == (4, 3)  # fp32 sees every update; 5e-6 is within the tolerance
    assert (c.bf16_exact, c.bf16_tol) == (1, 1)  # bf16 spacing at 1.0 is 2^-7: only 1.01 survives the cast
    assert c.fractions() == {"changed_frac_exact": 0.8, "changed_frac_tol": 0.6, "changed_frac_bf16_exact": 0.2,
                             "changed_frac_bf16_tol": 0.2}


def test_fp32_base_against_a_bf16_target_counts_the_cast_as_stored_only():
    base = torch.tensor([1.0, 1 + 1e-3, 0.1])  # 0.1 and 1 + 1e-3 are not bf16 values
    c = count_changes(base, base.bfloat16())
    assert (c.exact, c.tol, c.bf16_exact, c.bf16_tol) == (2, 2, 0, 0)


def test_nan_counts_as_changed():
    c = count_changes(torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0]))
    assert (c.exact, c.tol, c.bf16_exact, c.bf16_tol) == (1, 1, 1, 1)


def test_counts_agree_across_chunks(monkeypatch):
    from rlvr_cli.analysis import sparsity

    g = torch.Generator().manual_seed(0)
    base = torch.randn(1000, generator=g)
    target = base + (torch.rand(1000, generator=g) < 0.1) * 1e-3
    whole = count_changes(base, target)
    monkeypatch.setattr(sparsity, "CHUNK", 7)
    assert count_changes(base, target) == whole and whole.tol == int(((target - base).abs() > 1e-5).sum())


def test_rank_of_a_constructed_update():
    u, v = torch.eye(6)[:, :2], torch.eye(4)[:2]
    delta = 10 * torch.outer(u[:, 0], v[0]) + 0.01 * torch.outer(u[:, 1], v[1])  # singular values 10 and 0.01
    assert update_ranks(delta) == {"rank": 2, "effective_rank_99": 1, "full_rank": 4}
    assert update_ranks(torch.zeros(3, 5)) == {"rank": 0, "effective_rank_99": 0, "full_rank": 3}


@pytest.mark.parametrize("name, module, layer", [
    ("model.layers.3.self_attn.q_proj.weight", "q", 3), ("model.layers.0.mlp.down_proj.weight", "down", 0),
    ("model.layers.12.post_attention_layernorm.weight", "norm", 12),
    ("model.layers.1.self_attn.k_norm.weight", "norm", 1),
    ("model.embed_tokens.weight", "embeddings", None), ("lm_head.weight", "lm_head", None),
    ("model.norm.weight", "norm", None), ("transformer.h.2.attn.c_attn.weight", "other", 2),
])
def test_module_type_and_layer_of_a_name(name, module, layer):
    assert (module_type(name), layer_index(name)) == (module, layer)


def test_compare_groups_by_module_and_layer():
    base = {"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4), "model.layers.1.mlp.up_proj.weight":
            torch.zeros(2, 8), "model.norm.weight": torch.ones(4)}
    target = {k: v.clone() for k, v in base.items()}
    target["model.layers.0.self_attn.q_proj.weight"][0, :2] = 1.0
    target["model.layers.1.mlp.up_proj.weight"][1, 7] = 1e-6  # within the tolerance
    report = compare(base, target).to_json()
    assert report["overall"]["n"] == 36 and report["overall"]["exact"] == 3 and report["overall"]["tol"] == 2
    assert report["by_module"]["q"]["changed_frac_tol"] == 2 / 16
    assert report["by_layer"]["1"]["exact"] == 1 and report["by_layer"]["1"]["tol"] == 0
    assert list(report["by_module"]) == ["q", "up", "norm"]


def test_bad_comparisons_are_refused():
    a = {"w": torch.zeros(2, 2)}
    with pytest.raises(BadInput, match="tolerance must be a finite number >= 0"):
        compare(a, a, tolerance=-1e-5)
    with pytest.raises(BadInput, match="different architectures: 1 parameters missing from TARGET, e.g. w"):
        compare(a, {"v": torch.zeros(2, 2)})
    with pytest.raises(BadInput, match=r"differ in shape at w: \(2, 2\) vs \(2, 3\)"):
        compare(a, {"w": torch.zeros(2, 3)})


# --- during training, and afterwards on the saved weights ---------------------------------------------------

class FinalWeights(TrainerCallback):
    """The trained model's tensors when training ends (the reference a sparse delta must rebuild)."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.state = {k: v.detach().clone() for k, v in state_dict(model).items()}


def test_training_logs_sparsity_and_rlvr_sparsity_agrees(run_tiny, chars_reward, tmp_path):
    summary = run_tiny(*chars_reward, "grpo.max_steps=3", "sparsity.every_n_steps=2", "optimizer.lr=0.1")
    records = read_metrics(Path(summary["run_dir"]) / "metrics.jsonl")
    assert ["changed_frac_tol" in r for r in records] == [False, True, True]  # every 2 steps, and the last
    final = summary["update_sparsity"]
    assert final["step"] == 3 and final["n_params"] == 3_219_776
    assert final["changed_frac_tol"] == records[-1]["changed_frac_tol"]
    assert 0 < final["changed_frac_tol"] <= final["changed_frac_exact"] < 1

    result = runner.invoke(app, ["sparsity", "tiny-random", summary["run_dir"], "--rank"])
    assert result.exit_code == 0, result.output
    out = json.loads((Path(summary["run_dir"]) / "sparsity" / "sparsity.json").read_text())
    assert {k: out["overall"][k] for k in final if k.startswith("changed_frac_")} == \
        {k: v for k, v in final.items() if k.startswith("changed_frac_")}
    assert (Path(summary["run_dir"]) / "sparsity" / "sparsity_heatmap.png").stat().st_size > 10_000
    q = next(t for t in out["tensors"] if t["name"] == "model.layers.0.self_attn.q_proj.weight")
    assert q["full_rank"] == 64 and 0 <= q["effective_rank_99"] <= q["rank"] <= 64
    assert "% of entries changed" in result.output


def test_adapter_run_is_measured_on_its_merged_update(run_tiny, chars_reward):
    summary = run_tiny(*chars_reward, "adapter=lora", "adapter.r=4", "optimizer.lr=0.05", "sparsity.every_n_steps=0")
    final = summary["update_sparsity"]
    assert final["step"] == 2 and final["n_params"] == 3_219_776  # the base model's parameters, not the adapter's
    assert 0 < final["changed_frac_exact"] < 1  # only the adapted linear layers can move
    result = runner.invoke(app, ["sparsity", "tiny-random", summary["run_dir"]])
    assert result.exit_code == 0, result.output
    out = json.loads((Path(summary["run_dir"]) / "sparsity" / "sparsity.json").read_text())
    assert out["target"]["kind"] == "run-adapter"
    assert out["overall"]["changed_frac_exact"] == pytest.approx(final["changed_frac_exact"])
    by_module = out["by_module"]
    assert by_module["embeddings"]["exact"] == by_module["norm"]["exact"] == 0 and by_module["q"]["exact"] > 0


def test_sparsity_can_be_turned_off_or_skipped_for_big_models(run_tiny, chars_reward):
    off = run_tiny(*chars_reward, "sparsity=null", name="off")
    assert off["update_sparsity"] is None and off["update_sparsity_skipped"] == "sparsity=null"
    skipped = run_tiny(*chars_reward, "sparsity.max_copy_gb=0.001", name="skipped")
    assert skipped["update_sparsity"] is None
    assert skipped["update_sparsity_skipped"] == ("a copy of the initial weights would take 0.0 GB > "
                                                  "sparsity.max_copy_gb=0.001")


# --- sparse-delta checkpoints ---------------------------------------------------------------------------------

def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(sparse_delta._bits(a[k]), sparse_delta._bits(b[k])) for k in a)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sparse_delta_round_trip_is_bit_exact(dtype, tmp_path):
    base, _ = load_model("tiny-random", dtype)
    trained, _ = load_model("tiny-random", dtype)
    sd = state_dict(trained)
    with torch.no_grad():
        sd["model.layers.0.self_attn.q_proj.weight"][0, :3] += 1.0
        sd["model.layers.1.mlp.down_proj.weight"][5, 5] = float("nan")
        sd["model.layers.1.mlp.up_proj.weight"][0, 0] = -sd["model.layers.1.mlp.up_proj.weight"][0, 0]
        sd["model.norm.weight"].mul_(1.5)  # every entry: stored dense
    meta = sparse_delta.save(sd, state_dict(base), "tiny-random", tmp_path / "delta")
    assert (meta["n_changed"], meta["tensors_changed"], meta["dtype"]) == (3 + 1 + 1 + 64, 4, dtype)
    assert meta["bytes"] < 2000 < meta["full_bytes"] == sum(t.numel() * t.element_size() for t in sd.values())
    rebuilt, _ = sparse_delta.load(tmp_path / "delta")
    assert _bitwise_equal(state_dict(rebuilt), sd)


def test_sparse_delta_refuses_a_different_base(tmp_path):
    base, tokenizer = load_model("tiny-random")
    trained = {k: v.clone() for k, v in state_dict(base).items()}
    trained["model.norm.weight"][0] = 2.0
    sparse_delta.save(trained, state_dict(base), "tiny-random", tmp_path / "delta")
    other = tmp_path / "other"
    base.model.norm.weight.data[1] = 3.0  # one entry off
    base.save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(BadInput, match="refusing to rebuild on a different base"):
        sparse_delta.load(tmp_path / "delta", base=str(other))
    with pytest.raises(BadInput, match="refusing"):  # the right model in another dtype is another base too
        sparse_delta.apply(state_dict(load_model("tiny-random", "bfloat16")[0]), tmp_path / "delta")


def test_training_saves_a_sparse_delta_that_eval_and_sparsity_accept(run_tiny, chars_reward):
    final = FinalWeights()
    summary = run_tiny(*chars_reward, "save_format=sparse_delta", "optimizer.lr=0.1", callbacks=[final])
    run = Path(summary["run_dir"])
    assert sparse_delta.is_sparse_delta(run / "final") and not (run / "final" / "model.safetensors").exists()
    assert summary["weights_format"] == "sparse_delta" and summary["full_weights_bytes"] == 4 * 3_219_776
    assert summary["weights_bytes"] == (run / "final" / sparse_delta.TENSORS).stat().st_size
    rebuilt, _ = sparse_delta.load(run / "final")
    assert _bitwise_equal(state_dict(rebuilt), final.state)

    result = runner.invoke(app, ["sparsity", "tiny-random", str(run), "--output-dir", str(run / "sp")])
    assert result.exit_code == 0, result.output
    out = json.loads((run / "sp" / "sparsity.json").read_text())
    assert out["target"]["kind"] == "run-sparse-delta"
    meta = sparse_delta.read_meta(run / "final")
    assert out["overall"]["exact"] == meta["n_changed"]

    result = runner.invoke(app, ["eval", str(run), "--benchmarks", "gsm8k", "--limit", "1", "--k", "1",
                                 "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval" / "results.json").read_text())["model"]["kind"] == "run-sparse-delta"


# --- the command line -----------------------------------------------------------------------------------------

def test_rlvr_sparsity_bad_input_is_one_line(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr_cli.models.embedded import TINY_RANDOM

    LlamaForCausalLM(LlamaConfig(**{**TINY_RANDOM, "hidden_size": 32}, vocab_size=128)).save_pretrained(tmp_path / "m")
    cases = [
        (["tiny-random", "tiny-random", "--tolerance", "-1"], "--tolerance must be a finite number >= 0"),
        (["tiny-random", str(tmp_path / "m")], "BASE and TARGET differ in shape at model.embed_tokens.weight"),
        (["tiny-random", "/no/such/model"], "model directory not found: /no/such/model"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["sparsity", *args, "--output-dir", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert result.stderr.count("\n") == 1
