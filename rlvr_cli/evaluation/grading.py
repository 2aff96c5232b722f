"""The answer grader, shared by the training reward and `rlvr eval` so the two never disagree.

Protocol (math-verify, https://github.com/huggingface/Math-Verify):
1. The gold answer is parsed first, wrapped in `\\boxed{}` unless it already holds one, so plain
   answers ("025", "27", "\\frac{1}{2}") and full reference solutions both work.
2. The prediction is the completion's *last* `\\boxed{...}` when it has one (math-verify alone would
   merge several boxes into a set); with no box, math-verify's own extraction over the whole text.
3. `math_verify.verify(gold, pred)`: gold first, the function is not symmetric.

math-verify's timeouts use `signal.alarm`, which only works in the main thread. There they are
used as they are; off the main thread each grade runs in a worker process with the same timeout.
"""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

TIMEOUT_S = 5  # seconds per parse / verify, math-verify's default


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one completion: `correct`, and the answer text that was extracted."""

    correct: bool
    extracted: str | None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces matched; None if there is none
    or it is never closed."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _grade(gold: str, completion: str, timeout_s: int | None) -> Verdict:
    from math_verify import parse, verify

    gold_parsed = parse(gold if "\\boxed" in gold else f"\\boxed{{{gold}}}", parsing_timeout=timeout_s)
    boxed = last_boxed(completion)
    pred = parse(completion if boxed is None else f"\\boxed{{{boxed}}}", parsing_timeout=timeout_s)
    extracted = pred[-1] if pred else None
    if not gold_parsed or not pred:
        return Verdict(False, extracted)
    return Verdict(bool(verify(gold_parsed, pred, timeout_seconds=timeout_s)), extracted)


_pool: ProcessPoolExecutor | None = None


def grade(gold: str, completion: str, timeout_s: int = TIMEOUT_S) -> Verdict:
    """Grade one completion against a gold answer.

    Args:
        gold: the reference answer (LaTeX or plain), or a reference solution holding a `\\boxed{}`.
        completion: the model's text.
        timeout_s: seconds allowed for each parse and for verify; a timeout grades as incorrect.

    Returns:
        `Verdict(correct, extracted)`; `extracted` is math-verify's string form of the predicted
        answer, None when nothing could be extracted.
    """
    global _pool
    if threading.current_thread() is threading.main_thread():
        return _grade(gold, completion, timeout_s)
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=1)
    future = _pool.submit(_grade, gold, completion, timeout_s)
    try:
        return future.result(timeout=3 * timeout_s)
    except FutureTimeout:
        _pool.shutdown(wait=False, cancel_futures=True)
        for p in list(getattr(_pool, "_processes", {}).values()):
            p.kill()
        _pool = None
        return Verdict(False, None)
