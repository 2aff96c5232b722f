"""Library progress bars kept out of rlvr's output: transformers draws a tqdm bar for steps of a second on rlvr's
models ("Loading weights", "Writing model shards", and, once per cache, "Converting and de-quantizing GGUF tensors"),
on stderr around rlvr's own progress line and after its summary table. rlvr turns those off and keeps the hub's
download bars (`huggingface_hub`'s own tqdm: a download of gigabytes is worth watching)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _quiet(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return factory(*args, **{**kwargs, "disable": True})


def transformers_bars_off() -> None:
    """Turn off transformers' own progress bars, and only those (idempotent): through its public hook
    (`transformers.utils.logging.set_tqdm_hook`, https://huggingface.co/docs/transformers/main_classes/logging),
    each bar is built with `disable=True`; `transformers.utils.logging.disable_progress_bar()` would also silence
    the hub's download bars."""
    from transformers.utils import logging

    logging.set_tqdm_hook(_quiet)


@contextmanager
def gguf_conversion_bar_off() -> Iterator[None]:
    """While inside, transformers' GGUF converter draws no bar: it calls `tqdm.auto.tqdm` itself
    (`transformers/modeling_gguf_pytorch_utils.py`, 5.17: "Converting and de-quantizing GGUF tensors..."), outside
    `set_tqdm_hook`, so it is handed transformers' own `tqdm`, which `transformers_bars_off` turns off."""
    from transformers import modeling_gguf_pytorch_utils as gguf
    from transformers.utils import logging

    transformers_bars_off()
    own = gguf.tqdm
    gguf.tqdm = logging.tqdm
    try:
        yield
    finally:
        gguf.tqdm = own
