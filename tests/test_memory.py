"""`rlvr memory`: the standard figures, bad input in one line, and the analytic optimizer state equal to the
state that each real optimizer allocates on the real `tiny-random` model after one step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from typer.testing import CliRunner

from rlvr_cli.analysis.memory import (
    GB,
    breakdown,
    estimate,
    param_shapes,
    parse_model_arg,
    precision_of,
    run_memory_analytic,
)
from rlvr_cli.cli.analysis import memory_table
from rlvr_cli.cli.main import app
from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.units import human_bytes
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import count_params
from rlvr_cli.optimizers.build import optimizer_cls_and_kwargs
from rlvr_cli.optimizers.state import optimizer_names, state_bytes, state_bytes_analytic

runner = CliRunner()
#: Every optimizer option that runs on CPU (adamw_8bit needs CUDA and bitsandbytes).
CPU_OPTIMIZERS = [name for name in optimizer_names() if name != "adamw_8bit"]


@pytest.fixture(scope="module")
def tiny():
    """The real tiny-random model (fp32, 3.2M parameters), loaded once; tests step deep copies of it."""
    model, _ = load_model("tiny-random")
    return model


def _shapes(params) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in params]


def _one_step(model, name: str, *overrides: str):
    """Build the optimizer as training does over the model's trainable parameters, run one forward/backward on
    a few tokens and one `step()`; return the optimizer, its kwargs and the trainable shapes."""
    cls, kwargs = optimizer_cls_and_kwargs(compose_run([f"optimizer={name}", *overrides]).optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = cls(params, **kwargs)
    ids = torch.tensor([[1, 17, 42, 99, 7, 3]])  # [B=1, L=6]
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return optimizer, kwargs, _shapes(params)


# ------------------------------------------------------------------------------------- standard figures


def test_the_standard_figures():
    fp32 = breakdown(70_000_000_000, "adamw", "fp32")
    assert fp32.total == 1120 * GB and fp32.bytes_per_param == 16  # weights 4 + grads 4 + m 4 + v 4
    assert (fp32.weights, fp32.gradients, fp32.optimizer_states, fp32.master_weights) == (280 * GB, 280 * GB,
                                                                                          560 * GB, 0)
    mixed = breakdown(70_000_000_000, "adamw", "bf16-mixed")
    assert mixed.total == 1260 * GB and mixed.bytes_per_param == 18  # 2 + 4 master + 4 grads + 8 states
    assert mixed.master_weights == 280 * GB and mixed.weights == 140 * GB
    assert breakdown(1_700_000_000, "adamw").optimizer_states == 13_600_000_000  # 13.6 GB of AdamW states
    assert breakdown(1_700_000_000, "sgd").optimizer_states == 0
    bf16 = breakdown(1_000_000_000, "adamw", "bf16-true")
    assert bf16.bytes_per_param == 8 and bf16.optimizer_states == 4 * GB  # states in bf16: 2 x 2 B
    # 8-bit AdamW: 2 uint8 states + an fp32 absmax per 256-element block of each, in any precision
    assert breakdown(256_000_000, "adamw_8bit", "bf16-true").optimizer_states == 2 * 256_000_000 + 2 * 4 * 1_000_000
    for name, per_param in {"sgd_momentum": 4, "nesterov": 4, "adam": 8, "rmsprop": 4, "adagrad": 4,
                            "lion": 4}.items():
        assert breakdown(10**9, name).optimizer_states == per_param * GB, name


def test_adafactor_from_a_bare_count_is_a_marked_lower_bound():
    b = breakdown(70_000_000_000, "adafactor")
    assert not b.exact and b.optimizer_states == 0 and "shapes" in b.note
    assert breakdown(param_shapes("tiny-random"), "adafactor").exact


@pytest.mark.parametrize("text, count", [("70e9", 70 * 10**9), ("1.7e9", 1_700_000_000), ("135e6", 135_000_000),
                                         ("7B", 7 * 10**9), ("135M", 135_000_000), ("3219776", 3_219_776),
                                         ("tiny-random", None), ("Qwen/Qwen3-1.7B", None)])
def test_parse_model_arg(text, count):
    assert parse_model_arg(text) == count


def test_decimal_units():
    assert [human_bytes(n) for n in (0, 512, 3_200_000, 13.6e9, 1120e9)] == ["0 B", "512 B", "3.20 MB",
                                                                               "13.6 GB", "1,120 GB"]


# ------------------------------------------------------------------------------------------ bad input

BAD = {
    "optimizer": (dict(model="70e9", optimizers=["adam_w"]), "unknown optimizer 'adam_w'; valid optimizers: adafactor"),
    "precision": (dict(model="70e9", precision="fp16"), "unknown precision 'fp16'; valid precisions: fp32, "
                                                        "bf16-mixed, fp16-mixed, bf16-true"),
    "adapter": (dict(model="tiny-random", adapter="lorax"),
                "unknown adapter 'lorax'; valid adapters: adalora, dora, full"),
    "rank": (dict(model="tiny-random", adapter="lora", r=0), "must be an integer >= 1, got 0"),
    "rank_without_adapter": (dict(model="tiny-random", r=8), "--adapter full (every weight trains) has none"),
    "zero": (dict(model="0"), "parameter count must be a whole number >= 1 and <= 1e15, got '0'"),
    "negative": (dict(model="-1e9"), "got '-1e9'"),
    "fraction": (dict(model="1.5"), "got '1.5'"),
    "adapter_with_count": (dict(model="70e9", adapter="lora"), "--adapter needs a model (its layer shapes), not a "
                                                               "parameter count"),
    "missing_dir": (dict(model="./no/such/model"), "model directory not found: ./no/such/model"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_names_the_bad_value(case):
    kwargs, message = BAD[case]
    with pytest.raises(BadInput) as e:
        estimate(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_directory_without_a_model_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match=f"cannot read model '{tmp_path}': not a local model directory"):
        estimate(str(tmp_path))


def test_bad_input_is_checked_before_the_model_is_read():
    with pytest.raises(BadInput, match="unknown precision"):  # the directory is never looked at
        estimate("./no/such/model", precision="fp8")


def test_cli_bad_input_is_one_line_and_exit_2():
    result = runner.invoke(app, ["memory", "70e9", "--optimizer", "adamw", "--optimizer", "adam_w"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: unknown optimizer 'adam_w'; valid optimizers: ")
    assert result.stderr.count("\n") == 1


def test_cli_prints_the_table():
    result = runner.invoke(app, ["memory", "70e9", "--optimizer", "adamw", "--optimizer", "sgd", "--precision",
                                 "fp32"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    adamw = next(line for line in lines if " adamw " in line)
    sgd = next(line for line in lines if " sgd " in line)
    assert "560 GB" in adamw and "1,120 GB" in adamw and "16.00" in adamw
    assert "0 B" in sgd and "8.00" in sgd
    assert "Model training anatomy" in result.stdout and "Activations" in result.stdout


# ----------------------------------------------------------------------------- analytic == measured


@pytest.mark.parametrize("name", CPU_OPTIMIZERS)
def test_analytic_state_equals_the_measured_state_on_tiny_random(tiny, name):
    optimizer, kwargs, shapes = _one_step(copy.deepcopy(tiny), name)
    measured = state_bytes(optimizer)
    assert measured == state_bytes_analytic(name, shapes)
    assert measured == state_bytes_analytic(name, shapes, options=kwargs)
    if name == "sgd":
        assert measured == 0


@pytest.mark.parametrize("name, overrides", [
    ("adamw", ["+optimizer.amsgrad=true"]),                                  # + max_exp_avg_sq
    ("rmsprop", ["optimizer.momentum=0.9", "+optimizer.centered=true"]),     # + momentum_buffer, grad_avg
    ("adafactor", ["+optimizer.beta1=0.9"]),                                 # + exp_avg (fp32)
    ("sgd", ["optimizer.momentum=0.5"]),                                     # + momentum_buffer
])
def test_analytic_state_follows_the_optimizer_options(tiny, name, overrides):
    optimizer, kwargs, shapes = _one_step(copy.deepcopy(tiny), name, *overrides)
    assert state_bytes(optimizer) == state_bytes_analytic(name, shapes, options=kwargs)
    assert state_bytes(optimizer) > state_bytes_analytic(name, shapes)  # the config file's defaults keep less


@pytest.mark.parametrize("name", ["adamw", "sgd_momentum", "lion", "adagrad", "adafactor"])
def test_analytic_state_in_bfloat16(tiny, name):
    """States of torch optimizers and Lion take the parameter dtype (2 bytes); Adafactor's stay fp32."""
    optimizer, _, shapes = _one_step(copy.deepcopy(tiny).to(torch.bfloat16), name)
    assert state_bytes(optimizer) == state_bytes_analytic(name, shapes, dtype_bytes=2)


def test_adamw_8bit_follows_the_bitsandbytes_layout():
    """Not measurable here (CUDA only): the layout read from bitsandbytes' Optimizer2State.init_state."""
    big, small = (64, 64), (64,)  # 4096 elements: 8-bit; 64 elements: under min_8bit_size, fp32 states
    assert state_bytes_analytic("adamw_8bit", [big]) == 2 * 4096 + 2 * 4 * (4096 // 256) + 2 * 256 * 4
    assert state_bytes_analytic("adamw_8bit", [small]) == 2 * 64 * 4


# ------------------------------------------------------------------------------- shapes and adapters


def test_meta_device_shapes_equal_the_loaded_model(tiny):
    shapes = param_shapes("tiny-random")
    assert shapes == _shapes(tiny.parameters())  # tied embedding and head once
    est = estimate("tiny-random", ["sgd"])  # what `rlvr memory tiny-random` prints
    assert est.n_params == est.n_trainable == count_params(tiny)[1] == 3_219_776


@pytest.mark.parametrize("adapter", ["lora", "dora", "vera"])
def test_adapter_trainable_count_equals_real_peft(tiny, adapter):
    from peft import get_peft_model

    est = estimate("tiny-random", ["adamw", "sgd"], "fp32", adapter=adapter, r=8)
    real = get_peft_model(copy.deepcopy(tiny), peft_config(compose_run([f"adapter={adapter}", "adapter.r=8"]).adapter))
    trainable, total = count_params(real)
    assert (est.n_trainable, est.n_params) == (trainable, total) and trainable < total / 100
    adamw = est.rows["adamw"]  # frozen base: weights for all, gradients and states for the adapter only
    assert adamw.weights == 4 * total and adamw.gradients == 4 * trainable and adamw.master_weights == 0
    optimizer, _, shapes = _one_step(real, "adamw")
    assert adamw.optimizer_states == state_bytes(optimizer) == state_bytes_analytic("adamw", shapes)
    assert est.rows["sgd"].total == 4 * total + 4 * trainable


def test_run_memory_analytic_from_a_live_model(tiny):
    figures = run_memory_analytic(tiny, "adamw")
    shapes = _shapes(tiny.parameters())
    n = sum(p.numel() for p in tiny.parameters())
    assert figures == {"optimizer_state_bytes_analytic": state_bytes_analytic("adamw", shapes),
                       "memory_analytic_bytes": 4 * n + 4 * n + state_bytes_analytic("adamw", shapes)}
    half = copy.deepcopy(tiny).to(torch.bfloat16)
    assert run_memory_analytic(half, "sgd")["memory_analytic_bytes"] == 2 * n + 2 * n
    assert run_memory_analytic(tiny, "sgd", "bf16-mixed")["memory_analytic_bytes"] == (2 + 4 + 4) * n
    assert [precision_of(d) for d in (torch.float32, torch.bfloat16, "float16")] == ["fp32", "bf16-true", "bf16-true"]


def test_run_memory_analytic_counts_fp32_adapter_weights_over_a_bf16_base(tiny):
    """PEFT upcasts adapter weights to fp32 over a bf16 base; their gradients and AdamW states are fp32 too."""
    from peft import get_peft_model

    model = get_peft_model(copy.deepcopy(tiny).to(torch.bfloat16), peft_config(compose_run(["adapter=lora"]).adapter))
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    optimizer, kwargs, shapes = _one_step(model, "adamw")
    figures = run_memory_analytic(model, "adamw", options=kwargs)
    assert figures["optimizer_state_bytes_analytic"] == state_bytes(optimizer) == state_bytes_analytic("adamw", shapes)
    trainable = sum(math.prod(s) for s in shapes)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert figures["memory_analytic_bytes"] == 2 * frozen + 4 * trainable + 4 * trainable + state_bytes(optimizer)


def test_table_of_a_model_is_exact_and_marks_nothing():
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(memory_table(estimate("tiny-random", ["adafactor", "adamw"], adapter="lora", r=8)))
    text = " ".join(console.export_text().split())  # the title and caption wrap to the table's width
    assert "16,384 trainable (0.51%)" in text and "Exact for these parameter shapes" in text
    assert ">=" not in text and "~" not in text
