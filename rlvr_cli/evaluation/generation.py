"""Sampling completions for evaluation: batched Hugging Face `generate`, or vLLM when installed.

Both backends take chat prompts (one user message each), apply the model's chat template, and
return `k` completions per prompt, stopping at the end-of-sequence token or `max_new_tokens`. The vLLM backend
is refused as `rlvr train generation=vllm_*` is, with the same line (`rlvr_cli.evaluation.vllm.require_vllm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlvr_cli.core.errors import BadInput
from rlvr_cli.evaluation.vllm import require_vllm

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class Sampling:
    """How completions are sampled: `k` per prompt, `temperature` (0 = greedy), `top_p`,
    `max_new_tokens` (tokens per completion), `batch_size` (sequences per `generate` call, hf only), `seed`."""

    k: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its `text` and its length in `tokens` (EOS excluded)."""

    text: str
    tokens: int


def chat_prompts(tokenizer: Any, messages: list[str]) -> list[str]:
    """Each user message rendered through the tokenizer's chat template, ready for generation."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False,
                                          add_generation_prompt=True) for m in messages]


def generate_hf(model: Any, tokenizer: Any, prompts: list[str], sampling: Sampling,
                progress: Any = None) -> list[list[Completion]]:
    """`k` completions per rendered prompt with `model.generate`, `batch_size` sequences at a time.

    Sequences are batched with left padding, prompt by prompt (the k samples of a prompt sit
    together), longest prompts first to waste less padding. `progress` is an optional callable
    taking the number of sequences just finished (drives a progress bar). A completion ends at the first of
    the model's end tokens (`generation_config.eos_token_id`, a list for e.g. Qwen3, and the tokenizer's EOS).

    Returns:
        Per prompt, in input order, its k completions.
    """
    import torch

    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    flat = [i for i in order for _ in range(sampling.k)]  # [P*k] prompt indices
    out: list[list[Completion]] = [[] for _ in prompts]
    greedy = sampling.temperature == 0
    configured = model.generation_config.eos_token_id
    stop = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    torch.manual_seed(sampling.seed)
    model.eval()
    for start in range(0, len(flat), sampling.batch_size):
        idx = flat[start:start + sampling.batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        with torch.no_grad():
            seqs = model.generate(
                **enc, max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
                temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
                top_k=None, pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(stop),
            )
        new = seqs[:, enc["input_ids"].shape[1]:]  # [B, T]
        for i, row in zip(idx, new, strict=True):
            ids = row.tolist()  # after the first end token generate() pads: cut there
            ids = ids[:next((j for j, t in enumerate(ids) if t in stop), len(ids))]
            out[i].append(Completion(tokenizer.decode(ids, skip_special_tokens=True), len(ids)))
        if progress:
            progress(len(idx))
    return out


def vllm_engine(model_path: str, seed: int, dtype: str = "auto", tensor_parallel_size: int = 1,
                gpu_memory_utilization: float = 0.9) -> Any:
    """A vLLM `LLM` for a model directory or hub id, loaded once for every benchmark of an evaluation.

    Args:
        dtype: `auto` (the checkpoint's), `float32`, `bfloat16` or `float16`.
        tensor_parallel_size: GPUs the engine spans (vLLM's default 1).
        gpu_memory_utilization: share of each of those GPUs vLLM reserves for weights, activations and KV cache,
            in (0, 1] (vLLM's default 0.9). Engine arguments: https://docs.vllm.ai/en/latest/configuration/engine_args.html

    Raises:
        BadInput: vLLM is not installed, or torch sees no CUDA GPU (`require_vllm`).
    """
    require_vllm("--backend vllm", "--backend hf")
    from vllm import LLM

    return LLM(model=model_path, seed=seed, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
               gpu_memory_utilization=gpu_memory_utilization)


def generate_vllm(llm: Any, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
    """`k` completions per rendered prompt with a vLLM engine (`vllm_engine`): `LLM.generate` with
    `SamplingParams(n=k)`."""
    from vllm import SamplingParams

    params = SamplingParams(n=sampling.k, temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_new_tokens, seed=sampling.seed)
    results = llm.generate(prompts, params)
    return [[Completion(o.text, len(o.token_ids)) for o in r.outputs] for r in results]


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and vLLM on a machine without vLLM or a CUDA GPU, before any model loads.

    Raises:
        BadInput: naming the valid backends, or `rlvr_cli.evaluation.vllm.require_vllm`'s line (the one
            `rlvr train generation=vllm_*` prints, with `--backend vllm` / `--backend hf` as the choices).
    """
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend '{backend}'; valid backends: {', '.join(BACKENDS)}")
    if backend == "vllm":
        require_vllm("--backend vllm", "--backend hf")
