"""The embedded-model cache under concurrency: real processes, real files, a temporary `$RLVR_CACHE`.

Every test gets an empty cache seeded with a link to the already converted SmolLM2 (tiny-random takes its
tokenizer from there), so building tiny-random costs about a second and no test converts the GGUF again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from filelock import FileLock

from rlvr_cli.core.errors import BadInput
from rlvr_cli.models import embedded
from rlvr_cli.models.embedded import MARKER, RECIPE, is_complete, lock_path, tiny_random_dir, tiny_random_dirname
from rlvr_cli.models.loading import load_model

#: A child process: import everything heavy, say `ready`, wait for the file `go`, prepare and load tiny-random,
#: print the directory and the inode of its weights.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rlvr_cli.models.embedded import tiny_random_dir
    from rlvr_cli.models.loading import load_model
    import torch, transformers  # noqa: F401  (imported before the start line, so both children race)
    go = Path(sys.argv[1])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    path = tiny_random_dir()
    model, tokenizer = load_model("tiny-random")
    assert tokenizer is not None and sum(p.numel() for p in model.parameters()) > 0
    print(path, (path / "model.safetensors").stat().st_ino, flush=True)
""")


def _seed(cache: Path, smollm2: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "smollm2-135m-instruct").symlink_to(smollm2, target_is_directory=True)
    return cache


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The converted SmolLM2 of the default cache (converted here once, about 20 s, if it is missing)."""
    return embedded.smollm2_dir()


@pytest.fixture
def cache(tmp_path, monkeypatch, smollm2) -> Path:
    """An empty `$RLVR_CACHE` (for this process and its children) but for the link to SmolLM2."""
    path = _seed(tmp_path / "cache", smollm2)
    monkeypatch.setenv("RLVR_CACHE", str(path))
    return path


def _child(go: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _leftovers(cache: Path) -> list[str]:
    """Temporary or moved-aside directories of tiny-random still in the cache."""
    return sorted(p.name for p in cache.glob(f".{tiny_random_dirname()}-*"))


@pytest.mark.slow  # ~9 s; the held-lock test below stays in make test
def test_two_processes_preparing_at_once_both_succeed(cache):
    go = cache.parent / "go"
    first, second = _child(go), _child(go)
    go.touch()  # both are past their imports: they start preparing within milliseconds of each other
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    for proc, (_, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, err
    lines = [out.split() for out, _ in outputs]
    target = cache / tiny_random_dirname()
    assert lines[0] == lines[1] == [str(target), str((target / "model.safetensors").stat().st_ino)]
    assert is_complete(target) and _leftovers(cache) == []
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", MARKER):
        assert (target / name).is_file(), name
    model, tokenizer = load_model("tiny-random")
    assert model.config.num_hidden_layers == 2 and tokenizer.pad_token is not None


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda d: [(d / n).unlink() for n in ("config.json", MARKER)], id="config-missing-no-marker"),
    pytest.param(lambda d: (d / "config.json").unlink(), id="config-missing"),
    pytest.param(lambda d: (d / "model.safetensors").unlink(), id="weights-missing"),
    pytest.param(lambda d: [(d / MARKER).unlink(), _truncate(d / "model.safetensors")], id="weights-half-written"),
    pytest.param(lambda d: [p.unlink() for p in d.iterdir() if not p.name.startswith("tokenizer")],
                 id="only-tokenizer"),
])
def test_a_half_written_directory_is_rebuilt_and_loads(cache, damage):
    target = tiny_random_dir()
    reference = (target / "model.safetensors").read_bytes()
    damage(target)
    assert not is_complete(target)
    (cache / f".{tiny_random_dirname()}-k1ll3d").mkdir()  # the temporary directory of a preparation that was killed
    (cache / f".{tiny_random_dirname()}-k1ll3d" / "config.json").write_text("{}")
    model, _ = load_model("tiny-random")  # prepares the directory again, in this process
    assert model.config.num_hidden_layers == 2
    assert is_complete(target) and _leftovers(cache) == []
    assert (target / "model.safetensors").read_bytes() == reference  # fixed seed: the same model again


@pytest.mark.parametrize("marker", [
    pytest.param(None, id="no-marker"),
    pytest.param({"files": {}}, id="recipe-1-marker"),
    pytest.param({"recipe": 1, "files": {}}, id="older-recipe"),
])
def test_a_directory_of_an_older_recipe_is_rebuilt_never_trusted(cache, marker):
    """Issue 25: whole files can still be wrong (recipe 1's tokenizer stopped on <|im_start|>), so a directory
    whose marker names no recipe or an older one, or that has no marker (an rlvr before the marker), is rebuilt."""
    target = tiny_random_dir()
    files = json.loads((target / MARKER).read_text())["files"]
    config = json.loads((target / "tokenizer_config.json").read_text())
    (target / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|im_start|>"}))
    if marker is None:
        (target / MARKER).unlink()
    else:  # the old marker listing today's files and sizes: whole by every check but the recipe
        files["tokenizer_config.json"] = (target / "tokenizer_config.json").stat().st_size
        (target / MARKER).write_text(json.dumps({**marker, "files": files}))
    assert not is_complete(target)
    (target / "old-recipe").touch()  # gone once the directory is rebuilt (inodes are reused, so not those)
    assert tiny_random_dir() == target
    assert is_complete(target) and not (target / "old-recipe").exists()
    assert json.loads((target / MARKER).read_text())["recipe"] == RECIPE
    _, tokenizer = load_model("tiny-random")
    assert tokenizer.eos_token == "<|im_end|>" and _leftovers(cache) == []


def test_a_held_lock_makes_the_next_preparation_wait_then_use_the_finished_directory(cache, tmp_path, smollm2,
                                                                                    monkeypatch):
    # a finished tiny-random, built in another cache: what the lock holder is about to publish
    other = _seed(tmp_path / "other", smollm2)
    monkeypatch.setenv("RLVR_CACHE", str(other))
    finished = tiny_random_dir()
    monkeypatch.setenv("RLVR_CACHE", str(cache))

    target = cache / tiny_random_dirname()
    go = cache.parent / "go"
    with FileLock(lock_path(tiny_random_dirname())):
        waiting = _child(go)
        go.touch()
        time.sleep(3)
        assert waiting.poll() is None, waiting.communicate()  # waits, does not fail
        assert not target.exists()
        staged = cache / f".{tiny_random_dirname()}-holder"
        shutil.copytree(finished, staged)
        staged.rename(target)  # published as `prepare` does: complete, marker included, in one rename
        inode = (target / "model.safetensors").stat().st_ino
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.split() == [str(target), str(inode)]  # it used the finished directory: nothing was rebuilt


def test_a_lock_held_too_long_is_one_line_naming_the_lock_file_and_a_complete_directory_needs_no_lock(
        cache, monkeypatch):
    monkeypatch.setattr(embedded, "LOCK_TIMEOUT_S", 0.5)
    lock = lock_path(tiny_random_dirname())
    with FileLock(lock):
        start = time.monotonic()
        with pytest.raises(BadInput) as e:
            tiny_random_dir()
        assert time.monotonic() - start < 10
    message = str(e.value)
    assert "\n" not in message and str(lock) in message and "tiny-random" in message
    assert not (cache / tiny_random_dirname()).exists() and _leftovers(cache) == []

    target = tiny_random_dir()
    with FileLock(lock):  # the fast path takes no lock
        assert tiny_random_dir() == target


def test_a_cache_that_is_a_file_is_refused_naming_rlvr_cache(tmp_path, monkeypatch):
    """Issue 19, item 8: it was reported as 'not a local model directory ... hub did not serve it'."""
    cache = tmp_path / "cache-file"
    cache.write_text("not a directory")
    monkeypatch.setenv("RLVR_CACHE", str(cache))
    with pytest.raises(BadInput, match=r"the model cache .*cache-file \(RLVR_CACHE\) cannot hold 'tiny-random-"):
        tiny_random_dir()


def test_the_embedded_smollm2_ends_a_completion_at_im_end_as_the_hub_model_does(smollm2):
    """Issue 25, item 1: the GGUF converter made <|im_start|> the EOS and left no pad token. The tokenizer now
    carries the hub model's tokens, the model's configs agree with it (so transformers' own alignment, which the
    Trainer runs, changes nothing and warns nothing), and a greedy chat completion stops at <|im_end|>."""
    import logging

    import torch
    from transformers.trainer_utils import align_special_tokens

    model, tokenizer = load_model("smollm2-135m")
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                             "<|im_end|>")
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 2)
    assert tokenizer.clean_up_tokenization_spaces is False

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        align_special_tokens(model, tokenizer)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert [r.getMessage() for r in records if "PAD/BOS/EOS" in r.getMessage()] == []
    assert (model.config.eos_token_id, model.config.pad_token_id, model.config.bos_token_id) == (2, 2, 1)

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                           add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=64, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    completion = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(completion) < 64 and completion[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>"), \
        tokenizer.decode(completion)
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") not in completion


def test_the_cache_follows_xdg_and_its_directories_are_readable_by_the_group(tmp_path, monkeypatch, smollm2):
    """Issue 28, item 4: without `RLVR_CACHE` the cache is `$XDG_CACHE_HOME/rlvr`; a prepared model directory gets
    the mode of any new directory (0777 less the umask: 0755 under the usual 022), not mkdtemp's 0700."""
    import stat

    monkeypatch.delenv("RLVR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.cache_dir() == tmp_path / "xdg" / "rlvr"
    _seed(tmp_path / "xdg" / "rlvr", smollm2)
    old = os.umask(0o022)
    try:
        path = embedded.tiny_random_dir()
    finally:
        os.umask(old)
    assert path.parent == tmp_path / "xdg" / "rlvr"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert embedded.cache_dir() == Path.home() / ".cache" / "rlvr"
