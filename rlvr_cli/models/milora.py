"""MiLoRA (Wang et al., "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient LLM Finetuning",
arXiv 2406.09044): LoRA initialised from the r SMALLEST singular components of each adapted weight.

For a weight W [out, in] with SVD W = U S V^T (singular values in decreasing order), the minor part is
W_m = U_m S_m V_m^T over the last r components, and (paper, section 3)

    A = sqrt(S_m) V_m^T   [r, in]        B = U_m sqrt(S_m)   [out, r]        W_base = W - W_m

so the model is unchanged at step 0 and training starts from the directions the pretrained weights use least.
PEFT 0.21 has no such init (its `init_lora_weights="mica"` is another method: B from the minor left singular
vectors and frozen, A = 0, base untouched), so `conf/adapter/milora.yaml` builds a plain `peft.LoraConfig` and names
`init` as its `post_init`, which `rlvr_cli.models.adapters.initialize` applies once PEFT has built the model. It is
PEFT's own PiSSA init (`LoraLayer.pissa_init`, exact SVD) with the minor components instead of the principal ones,
including its handling of LoRA's scale s = lora_alpha / r: S_m is divided by s, so that s B A = W_m.
"""

from __future__ import annotations

from typing import Any

from rlvr_cli.core.errors import BadInput


def init(model: Any, adapter_name: str = "default") -> int:
    """Re-initialise every LoRA layer of `adapter_name` in `model` as MiLoRA, in place (see the module docstring).

    Each adapted weight W [out, in] (transposed first for fan_in_fan_out layers) is decomposed in fp32
    (`torch.linalg.svd`, exact); `lora_A` [r, in] and `lora_B` [out, r] get the minor components, the base weight
    becomes W - s B A in its own dtype. Layers on the meta device (shapes only) are left alone.

    Args:
        model: a `peft.PeftModel` (or any module) holding `peft.tuners.lora.LoraLayer`s with Linear `lora_A`.
        adapter_name: the PEFT adapter to initialise.

    Returns:
        The number of layers initialised.

    Raises:
        BadInput: a LoRA layer that is not a linear one (an embedding, a convolution), or a rank r larger than
            min(out, in) of a weight.
    """
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    count = 0
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter_name not in module.lora_A:
            continue
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        if not isinstance(lora_a, torch.nn.Linear):
            raise BadInput(f"MiLoRA initialises linear LoRA layers only; {name} is a {type(lora_a).__name__}: "
                           f"narrow adapter.target_modules")
        base = module.get_base_layer()
        if base.weight.device.type == "meta":
            continue
        r, s = module.r[adapter_name], module.scaling[adapter_name]
        dtype = base.weight.dtype
        with torch.no_grad():
            w = transpose(base.weight.to(torch.float32), module.fan_in_fan_out)  # [out, in]
            if r > min(w.shape):
                raise BadInput(f"adapter.r={r} is larger than the smaller side of {name} {tuple(w.shape)}: MiLoRA "
                               f"takes the r smallest of min(out, in) singular values; use a smaller adapter.r")
            u, sv, vh = torch.linalg.svd(w, full_matrices=False)  # sv in decreasing order
            s_minor = sv[-r:] / s
            a = torch.diag(s_minor.sqrt()) @ vh[-r:]  # [r, in]
            b = u[:, -r:] @ torch.diag(s_minor.sqrt())  # [out, r]
            lora_a.weight.data = a.to(lora_a.weight.dtype)
            lora_b.weight.data = b.to(lora_b.weight.dtype)
            base.weight.data = transpose((w - s * b @ a).to(dtype), module.fan_in_fan_out)
        count += 1
    return count
