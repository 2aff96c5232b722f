"""Loading a model and its tokenizer by name: embedded presets, local directories, hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.models.deepspeed_log import deepspeed_logs_to_stderr
from rlvr_cli.models.embedded import EMBEDDED, EMBEDDED_DIRS

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def model_path(name_or_path: str) -> str:
    """The directory or hub id to load for `name_or_path` (embedded names resolve to their cache directory)."""
    return str(EMBEDDED_DIRS[name_or_path]()) if name_or_path in EMBEDDED_DIRS else name_or_path


def check_model_source(name_or_path: str) -> None:
    """Fail early on a model that cannot exist: a path-like name that is not a directory.

    Raises:
        BadInput: `name_or_path` looks like a local path (starts with `/`, `.` or `~`) and is not a directory.
    """
    if name_or_path in EMBEDDED:
        return
    if name_or_path.startswith(("/", ".", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise BadInput(f"model directory not found: {name_or_path}")


def load_config(name_or_path: str) -> Any:
    """The model's `transformers` config (`AutoConfig.from_pretrained`): a cheap check that a model exists and
    is readable, before a run directory is created or any weight loads.

    Raises:
        BadInput: a path-like name that is not a directory, a config.json that does not parse, or a name that
            is neither a local model directory nor served by the hub.
    """
    deepspeed_logs_to_stderr()
    from transformers import AutoConfig

    check_model_source(name_or_path)
    try:
        return AutoConfig.from_pretrained(model_path(name_or_path))
    except (OSError, ValueError, KeyError) as e:  # transformers raises these for a missing or unknown model
        raise BadInput(f"cannot read model '{name_or_path}': not a local model directory with a valid config.json, "
                       f"and the hub did not serve it ({one_line(e)})") from None


def load_model(name_or_path: str, dtype: str = "float32",
               with_tokenizer: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: `smollm2-135m`, `tiny-random`, a local directory, or a hub id.
        dtype: `float32`, `bfloat16` or `float16`: the dtype the weights are stored and trained in; `auto`:
            the dtype the checkpoint's config names (weights as stored).
        with_tokenizer: False loads the weights only (the tokenizer returned is None).

    Returns:
        `(model, tokenizer)`; the tokenizer has a pad token.

    Raises:
        BadInput: the model cannot be found locally and the hub is unreachable; a weights file is damaged
            (safetensors' `SafetensorError`: truncated, or not a safetensors file).
    """
    deepspeed_logs_to_stderr()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_source(name_or_path)
    try:
        path = model_path(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path) if with_tokenizer else None
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    except (OSError, ValueError) as e:  # transformers raises either for a directory without a model
        raise BadInput(f"cannot load model '{name_or_path}': not a local model directory, and the hub did not "
                       f"serve it ({one_line(e)})") from None
    except Exception as e:
        if type(e).__name__ != "SafetensorError":  # safetensors' own, for a truncated or garbage weights file
            raise
        raise BadInput(f"cannot read the weights of '{name_or_path}': a .safetensors file there is damaged "
                       f"(truncated or not safetensors: {one_line(e)}); save or train it again") from None
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
