"""Each adapter option trains exactly the parameters its paper's formula says, on the real tiny-random model."""

import pytest
import torch
from peft import get_peft_model

from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import count_params

# trainable parameters per adapted Linear(in, out) at rank r
FORMULA = {
    "lora": lambda i, o, r: r * (i + o),          # A [r, in], B [out, r]            arXiv 2106.09685
    "rslora": lambda i, o, r: r * (i + o),        # same shapes, other scale          arXiv 2312.03732
    "dora": lambda i, o, r: r * (i + o) + o,      # plus magnitude [out]              arXiv 2402.09353
    "vera": lambda i, o, r: r + o,                # lambda_d [r], lambda_b [out]      arXiv 2310.11454
}


@pytest.fixture(scope="module")
def linear_shapes():
    model, _ = load_model("tiny-random")
    return [(m.in_features, m.out_features) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]


@pytest.mark.parametrize("name", list(FORMULA))
@pytest.mark.parametrize("r", [1, 8])
def test_trainable_parameters_match_the_formula(name, r, linear_shapes):
    model, _ = load_model("tiny-random")
    total_before = count_params(model)[1]
    peft_model = get_peft_model(model, peft_config(compose_run([f"adapter={name}", f"adapter.r={r}"]).adapter))
    trainable, total = count_params(peft_model)
    assert trainable == sum(FORMULA[name](i, o, r) for i, o in linear_shapes)
    assert total == total_before + trainable


def test_full_fine_tuning_trains_everything():
    model, _ = load_model("tiny-random")
    assert peft_config(compose_run(["adapter=full"]).adapter) is None
    trainable, total = count_params(model)
    assert trainable == total == 3_219_776  # 49152 x 64 tied embedding + 2 layers + final norm


def test_lora_options_reach_peft():
    cfg = peft_config(compose_run(["adapter=rslora", "adapter.r=4", "adapter.alpha=32", "adapter.dropout=0.1",
                               "adapter.target_modules=[q_proj,v_proj]"]).adapter)
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.use_rslora, cfg.use_dora) == (4, 32, 0.1, True, False)
    assert set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert peft_config(compose_run(["adapter=dora"]).adapter).use_dora


def test_vera_dropout_and_peft_field_names_reach_peft():
    """`adapter.dropout` is VeRA's `vera_dropout`; PEFT's own field names are overrides too."""
    cfg = peft_config(compose_run(["adapter=vera", "adapter.r=16", "adapter.dropout=0.05"]).adapter)
    assert type(cfg).__name__ == "VeraConfig" and (cfg.r, cfg.vera_dropout) == (16, 0.05)
    assert peft_config(compose_run(["adapter=lora", "adapter.lora_alpha=7"]).adapter).lora_alpha == 7


def test_a_field_peft_does_not_take_is_one_line_bad_input():
    with pytest.raises(BadInput, match=r"^adapter=lora: cannot build peft.LoraConfig: .*ranc") as e:
        peft_config(compose_run(["adapter=lora", "+adapter.ranc=3"]).adapter)
    assert "\n" not in str(e.value)
