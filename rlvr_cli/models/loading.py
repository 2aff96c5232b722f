"""Loading a model and its tokenizer by name: embedded presets, local directories, hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr_cli.core import hub
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.models.deepspeed_log import deepspeed_logs_to_stderr
from rlvr_cli.models.embedded import EMBEDDED, EMBEDDED_DIRS
from rlvr_cli.models.progress_bars import transformers_bars_off

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def model_path(name_or_path: str) -> str:
    """The directory or hub id to load for `name_or_path` (embedded names resolve to their cache directory)."""
    return str(EMBEDDED_DIRS[name_or_path]()) if name_or_path in EMBEDDED_DIRS else name_or_path


def model_config(name_or_path: str) -> Any:
    """The model's `transformers` config, read from its config.json alone (`transformers.AutoConfig`: no weights
    load); None when it cannot be read (a hub id off-line, a damaged config: the model load names it later)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_path(name_or_path))
    except Exception:
        return None


def context_length(name_or_path: str, config: Any = None) -> int | None:
    """The model's context in tokens (its config's `max_position_embeddings`, `config` or `model_config`'s); None
    when the config cannot be read or has no such field."""
    config = config if config is not None else model_config(name_or_path)
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def check_model_source(name_or_path: str) -> None:
    """Fail early on a model that cannot exist: a path-like name that is not a directory.

    Raises:
        BadInput: `name_or_path` looks like a local path (starts with `/`, `.` or `~`) and is not a directory.
    """
    if name_or_path in EMBEDDED:
        return
    if name_or_path.startswith(("/", ".", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise BadInput(f"model directory not found: {name_or_path}")


def hub_options(name_or_path: str) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` of `name_or_path`: `{"local_files_only": True}` for a hub id while the
    hub cannot be asked (`rlvr_cli.core.hub.unreachable`: `HF_HUB_OFFLINE`, or no answer through huggingface_hub's
    client), so that a cached model loads at once and a missing one fails at once; else `{}` (local directories and
    embedded models never ask the hub)."""
    if name_or_path in EMBEDDED or Path(name_or_path).expanduser().is_dir():
        return {}
    return {"local_files_only": True} if hub.unreachable() else {}


def not_found(name_or_path: str, e: BaseException, verb: str = "read") -> BadInput:
    """The one-line refusal of a model that neither a local directory nor the hub (or its cache) provides."""
    start = f"cannot {verb} model '{name_or_path}': not a local model directory with a valid config.json"
    if Path(name_or_path).expanduser().is_dir():  # a local directory: the hub was never asked
        return BadInput(f"{start} and weights ({one_line(e)})")
    if hub.offline():  # transformers' own text says it could not connect, which is not what happened
        return BadInput(f"{start}, and not in the hub cache, which is all HF_HUB_OFFLINE=1 lets rlvr read; unset "
                        f"HF_HUB_OFFLINE to download it, or download it first (hf download {name_or_path})")
    if why := hub.unreachable():  # transformers' own text then only repeats that it could not connect
        return BadInput(f"{start}, not in the hub cache, and the hub {why}; "
                        f"give a local model directory, or download it where the hub can be reached (hf download "
                        f"{name_or_path})")
    return BadInput(f"{start}, and the hub did not serve it ({one_line(e)})")


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
        return AutoConfig.from_pretrained(model_path(name_or_path), **hub_options(name_or_path))
    except BadInput:  # rlvr's own refusal (an embedded model whose cache, RLVR_CACHE, cannot hold it) as it is
        raise
    except (OSError, ValueError, KeyError) as e:  # transformers raises these for a missing or unknown model
        raise not_found(name_or_path, e) from None


def check_weights(name_or_path: str) -> None:
    """Refuse a local model (a directory, or an embedded one) whose `.safetensors` files are damaged, before a run
    directory exists: each file's header is read (safetensors' `safe_open`, which checks that the header covers the
    whole file), no tensor loads. Nothing for a hub id.

    Raises:
        BadInput: a truncated or garbage `.safetensors` file, naming it.
    """
    path = Path(model_path(name_or_path)).expanduser()
    if not path.is_dir():
        return
    from safetensors import SafetensorError, safe_open

    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), "numpy"):
                pass
        except (SafetensorError, OSError) as e:
            raise BadInput(f"cannot read the weights of '{name_or_path}': a .safetensors file there is damaged ({f}: "
                           f"truncated or not safetensors: {one_line(e)}); save or train it again") from None


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
    transformers_bars_off()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_source(name_or_path)
    try:
        path, hub = model_path(name_or_path), hub_options(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path, **hub) if with_tokenizer else None
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                                                     **hub)
    except BadInput:  # rlvr's own refusal (an embedded model whose cache, RLVR_CACHE, cannot hold it) as it is
        raise
    except (OSError, ValueError) as e:  # transformers raises either for a directory without a model
        raise not_found(name_or_path, e, "load") from None
    except Exception as e:
        if type(e).__name__ != "SafetensorError":  # safetensors' own, for a truncated or garbage weights file
            raise
        check_weights(name_or_path)  # names the file
        raise BadInput(f"cannot read the weights of '{name_or_path}': a .safetensors file there is damaged "
                       f"(truncated or not safetensors: {one_line(e)}); save or train it again") from None
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
