"""The answer grader, shared by the training reward, `rlvr eval` and maj@k's vote, so the three never disagree.

Protocol (math-verify, https://github.com/huggingface/Math-Verify, for the equivalence):
1. Extraction, one rule for every caller (`final_answer`): the answer is the content of the completion's last closed
   box, written `\\boxed{...}`, `\\boxed {...}`, `\\boxed X` or `\\fbox{...}`. When the gold answer has several
   parts ("2, 5") and the completion boxes them separately (`\\boxed{2}` ... `\\boxed{5}`), the last boxes are
   joined until they hold as many parts. A completion without a closed box has no answer and is graded wrong
   (`extract="boxed"`, the default): a GRPO completion cut at `max_completion_length` before its box earns
   nothing, as in open-r1's accuracy reward. `extract="any"` falls back to math-verify's own extraction over the
   whole text (its last expression), the rule rlvr used before.
2. Multiple choice: when the gold answer is one option letter (`C`, `(C)`, `\\text{(C)}`, `\\textbf{C}`), a box
   that starts with an option label answers with that letter, its option text ignored: `C`, `(C)`, `[C]`,
   `\\text{(C)}`, `C: 12`, `C. 12`, `C) 12`, `(C) 12`, `\\textbf{(C) }12`, `E: \\text{...}` all answer C (the
   extracted answer is the letter, so maj@k votes by letter too). A bare letter followed by text without `:`, `.`
   or `)` is no label ("A polygenic score..." is not option A), and a box naming two options (`(C) or (D)`,
   `C and D`) keeps its text. NVIDIA NeMo-Gym's MCQA verifier reads boxes the same way
   (https://github.com/NVIDIA-NeMo/Gym, resources_servers/mcqa/app.py, `_parse_answer_letter_strict_boxed`);
   a gold that is not a letter is graded as before.
3. Percentages are graded by their number: `\\%`, `%`, "percent", "percentage" and "pct" after a number are
   dropped from the gold and the answer, so `10\\%` = `10 \\%` = `10`. `0.1` is not `10\\%` (the question asks
   for a percentage; MATH's `is_equiv` decides the same, Qwen2.5-Math's grader accepts both).
4. Mixed numbers: a whole number, a space and a proper fraction (`7 3/4`, `-2 1/3`) is that mixed number, 31/4 and
   -7/3 (PRM800K's grader reads `7 3/4` as `7+3/4`, https://github.com/openai/prm800k,
   prm800k/grading/grader.py; math-verify alone reads it as (7+3)/4). It is rewritten `7\\frac{3}{4}`, which
   math-verify's LaTeX parser (latex2sympy2_extended, `interpret_as_mixed_fractions`) already reads as a mixed
   number, like `7 \\frac{3}{4}` and `7\\frac34`; `7~\\frac{3}{4}` becomes `7 \\frac{3}{4}`. An improper
   `4 10/3` is left as it is (not a mixed number, as in Math-Verify pull request #81).
5. Both sides are parsed by math-verify as `\\boxed{answer}`; the gold may also be a reference solution, whose
   boxes (all of them, joined) are the gold answer. Lists, sets and tuples are compared as such by math-verify
   (`{1, 2}` = `2, 1`; `(1, 2)` is ordered).
6. `math_verify.verify(gold, pred)`: gold first, the function is not symmetric.

math-verify's timeouts use `signal.alarm`, which only works in the main thread. There they are used as they are;
off the main thread each call runs in a worker process with the same timeout.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from rlvr_cli.core.errors import BadInput

TIMEOUT_S = 5  # seconds per parse / verify, math-verify's default
EXTRACT_RULES = ("boxed", "any")  # `grade(extract=...)` and `rlvr eval --extract`

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_PERCENT = re.compile(r"\s*(?:\\,)?\s*"  # `\%`, `%`, `\text{\%}`, `percent`, `\text{ percent}`, ...
                      r"(?:\\text\{\s*\\?%\s*\}|\\?%|(?:\\(?:text|mbox)\{\s*)?(?:percentage|percent|pct)\b\}?)")
_OPEN, _CLOSE = "([{", ")]}"
_THOUSANDS = re.compile(r"(?:\\\$)?-?\d{1,3}(?:,(?:\\!\s*)?\d{3})+(?:\.\d*)?")  # 1,000  \$32,\!348  1,000.5
# `7 3/4`: a whole number, a space, a fraction; not part of a decimal, a power, a longer fraction or a word
_MIXED = re.compile(r"(?<![\w.,/^_{}\\])(\d+)[ \t]+(\d+)[ \t]*/[ \t]*(\d+)(?![\w./^{])")
_MIXED_TILDE = re.compile(r"(?<![\w.])(\d+)\s*~\s*(?=\\[dtc]?frac(?![A-Za-z]))")  # 7~\frac{3}{4}
_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|textsf|texttt|mathrm|mathbf|mathsf|mbox)\s*\{([^{}]*)\}")
_LABEL = re.compile(r"\(\s*([A-Z])\s*\)|\[\s*([A-Z])\s*\]|([A-Z])(?![A-Za-z0-9])")  # (C)  [C]  C
_SPACE = r"(?:\s|\\[ ,;:!]|\\q?quad(?![A-Za-z])|~|\$)*"  # spaces, LaTeX spaces, math delimiters
_OTHER_OPTION = re.compile(r"\(\s*[A-Z]\s*\)|^" + _SPACE + r"(?:[,;/&]|or\b|and\b)" + _SPACE + r"\(?[A-Z](?![A-Za-z])")


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one completion: `correct`, and the answer that was extracted (the box content, the
    option letter alone when the gold is a letter and the box starts with an option label, or math-verify's string
    form under `extract="any"`; None when there is none)."""

    correct: bool
    extracted: str | None


def boxed_answers(text: str) -> list[str]:
    """The contents of every closed box in `text`, in order: `\\boxed{...}` and `\\fbox{...}` (braces matched,
    spaces before the brace allowed) and `\\boxed X` (the run of characters up to a space or `$`, a trailing `.`
    or `,` dropped). Empty boxes and a box never closed (a completion cut inside it) are left out."""
    out = []
    for m in _BOX.finditer(text):
        i = m.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    break
            if depth != 0:
                continue
            answer = text[i + 1:j]
        elif i > m.end():
            answer = re.match(r"[^\s$]*", text[i:]).group().rstrip(".,")
        else:
            continue
        if answer.strip():
            out.append(answer.strip())
    return out


def _closes_at_end(s: str, i: int) -> bool:
    """Whether the brace at `s[i]` is closed by the last character of `s` (one group around everything)."""
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return j == len(s) - 1
    return False


def answer_parts(answer: str) -> int:
    """How many answers `answer` lists: its top-level `,` / `;` separated parts (`"2, 5"` -> 2), looking inside one
    outer `\\{...\\}` or `{...}` (`"\\{1, 2\\}"` -> 2); a tuple or interval `"(2, 3)"` and a thousands
    separator `"1,000"` are one part."""
    s = answer.strip().strip("$").strip()
    if _THOUSANDS.fullmatch(s):
        return 1
    for left, right in ((r"\left\{", r"\right\}"), (r"\{", r"\}"), ("{", "}")):
        if s.startswith(left) and s.endswith(right) and _closes_at_end(s, len(left) - 1):
            s = s[len(left):-len(right)]
            break
    depth, parts = 0, 1
    for ch in s:
        depth += (ch in _OPEN) - (ch in _CLOSE)
        parts += depth == 0 and ch in ",;"
    return parts


def choice_letter(answer: str, with_text: bool = True) -> str | None:
    """The option letter that `answer` starts with, or None: `"C"`, `"(C)"`, `"[C]"`, `"\\text{(C)}"`,
    `"\\textbf{C}"` -> `"C"`, and with `with_text`, an option label followed by its text: `"C: 12"`, `"C. 12"`,
    `"C) 12"`, `"(C) 12"`, `"\\textbf{(C) }12"`, `"\\text{I: NGS can ...}"`, `"E: \\text{A polygenic ...}"`.
    A bare letter needs `:`, `.` or `)` before its text (`"A polygenic risk score"` is None), and an answer that
    names a second option (`"(C) or (D)"`, `"(C), (D)"`, `"C) and D"`) is None. Only capital letters are option
    letters (`"d"` is a variable). The rule follows NVIDIA NeMo-Gym's MCQA verifier
    (https://github.com/NVIDIA-NeMo/Gym, resources_servers/mcqa/app.py, `_parse_answer_letter_strict_boxed`), plus
    the parenthesised labels of AMC answer keys (`\\textbf{(C) }12`).

    Args:
        answer: an answer (box content or gold answer).
        with_text: whether option text may follow the label; False for a gold answer, which is the letter alone.

    Returns:
        The capital letter, or None when `answer` does not start with one option label. Never raises.
    """
    s = answer
    while (unwrapped := _WRAPPER.sub(r"\1", s)) != s:  # \text{(C)} -> (C), \textbf{(C) }12 -> (C) 12
        s = unwrapped
    m = re.match(_SPACE, s)
    s = s[m.end():]
    label = _LABEL.match(s)
    if label is None:
        return None
    letter = next(g for g in label.groups() if g)
    rest = s[label.end():]
    if re.fullmatch(_SPACE + r"\.?" + _SPACE, rest):
        return letter
    if not with_text:
        return None
    if label.group(3):  # a bare letter: `C: ...`, `C. ...`, `C) ...`
        sep = re.match(_SPACE + r"[:.)]", rest)
        if sep is None:
            return None
        rest = rest[sep.end():]
    return None if _OTHER_OPTION.search(rest) else letter


def mixed_numbers(answer: str) -> str:
    """`answer` with each plain mixed number written as LaTeX: `"7 3/4"` -> `"7\\frac{3}{4}"`, `"-2 1/3"` ->
    `"-2\\frac{1}{3}"`, and `"7~\\frac{3}{4}"` -> `"7 \\frac{3}{4}"`. math-verify's LaTeX parser
    (latex2sympy2_extended, `interpret_as_mixed_fractions`, https://github.com/huggingface/latex2sympy2_extended)
    reads an integer followed by a fraction as a mixed number (`7\\frac{3}{4}` = 31/4, `-3 \\frac{1}{2}` = -7/2);
    on `7 3/4` it would read (7 + 3)/4. Only a proper fraction makes a mixed number (`"4 10/3"` is left as it is,
    as in https://github.com/huggingface/Math-Verify/pull/81); PRM800K's grader reads `7 3/4` as `7+3/4` too
    (https://github.com/openai/prm800k, prm800k/grading/grader.py, `_inject_implicit_mixed_number`).

    Args:
        answer: an answer (box content or gold answer).

    Returns:
        The rewritten answer (`answer` itself when it holds no mixed number). Never raises.
    """
    def frac(m: re.Match) -> str:
        whole, num, den = m.groups()
        return f"{whole}\\frac{{{num}}}{{{den}}}" if int(num) < int(den) else m.group()

    return _MIXED_TILDE.sub(r"\1 ", _MIXED.sub(frac, answer))


def final_answer(text: str, parts: int = 1, choice: bool = False) -> str | None:
    """The answer of a completion (the extraction rule of `grade`, `rlvr eval` and maj@k): its last closed box;
    when `parts` > 1 and that box holds fewer parts, the boxes before it are joined in front (`", "`) until they
    hold `parts`. When `choice` (the gold is an option letter) and that box starts with an option label, the
    answer is the letter alone (`choice_letter`: `"C: 12"` -> `"C"`). None when `text` has no closed box.

    Args:
        text: a completion.
        parts: how many parts the gold answer has (`answer_parts(gold)`).
        choice: whether the gold answer is an option letter (`choice_letter(gold, with_text=False)`).

    Returns:
        The answer text, or None. Never raises.
    """
    boxes = boxed_answers(text)
    if not boxes:
        return None
    if choice and (letter := choice_letter(boxes[-1])):
        return letter
    taken = [boxes[-1]]
    count = answer_parts(boxes[-1])
    for box in reversed(boxes[:-1]):
        if count >= parts:
            break
        if box not in taken:
            taken.insert(0, box)
            count += answer_parts(box)
    return ", ".join(taken)


def strip_percent(answer: str) -> str:
    """`answer` without percent marks: `"10\\%"`, `"10 %"`, `"10 percent"`, `"10\\text{\\%}"` -> `"10"`."""
    return _PERCENT.sub("", answer).strip()


def gold_answer(gold: str) -> str:
    """The gold answer of a benchmark row: when it is a reference solution holding boxes, its distinct boxes in
    order, joined by `", "` (MATH's "find all" solutions box each item); else the text itself. Percent marks
    stripped."""
    boxes = boxed_answers(gold) if "\\boxed" in gold or "\\fbox" in gold else []
    return strip_percent(", ".join(dict.fromkeys(boxes)) if boxes else gold)


def _parse(answer: str, timeout_s: int | None) -> list:
    from math_verify import parse

    return parse(f"\\boxed{{{mixed_numbers(answer)}}}", parsing_timeout=timeout_s)


def _grade(gold: str, completion: str, extract: str, timeout_s: int | None) -> Verdict:
    from math_verify import parse, verify

    gold = gold_answer(gold)
    letter = choice_letter(gold, with_text=False)
    gold = letter or gold
    answer = final_answer(completion, answer_parts(gold), choice=letter is not None)
    gold_parsed = _parse(gold, timeout_s)
    if answer is not None:
        pred = _parse(strip_percent(answer), timeout_s)
    elif extract == "any":
        pred = parse(completion, parsing_timeout=timeout_s)
        answer = pred[-1] if pred else None
    else:
        return Verdict(False, None)
    if not gold_parsed or not pred:
        return Verdict(False, answer)
    return Verdict(bool(verify(gold_parsed, pred, timeout_seconds=timeout_s)), answer)


def _classes(answers: Sequence[str | None], timeout_s: int | None) -> list[int]:
    from math_verify import verify

    reps: list[tuple[str, list]] = []  # one (answer, parsed) per class, in order of first appearance
    by_text: dict[str, int] = {}
    out = []
    for answer in answers:
        if answer is None:
            out.append(-1)
            continue
        if answer not in by_text:
            parsed = _parse(strip_percent(answer), timeout_s)
            by_text[answer] = next((c for c, (_, rep) in enumerate(reps)
                                    if parsed and rep and verify(rep, parsed, timeout_seconds=timeout_s)), len(reps))
            if by_text[answer] == len(reps):
                reps.append((answer, parsed))
        out.append(by_text[answer])
    return out


_pool: ProcessPoolExecutor | None = None


def _call(fn: Callable[..., Any], args: tuple, timeout_s: float, default: Any) -> Any:
    """`fn(*args)` here in the main thread (math-verify's alarms work), else in a worker process, killed after
    `timeout_s` seconds (then `default`)."""
    global _pool
    if threading.current_thread() is threading.main_thread():
        return fn(*args)
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=1)
    future = _pool.submit(fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        _pool.shutdown(wait=False, cancel_futures=True)
        for p in list(getattr(_pool, "_processes", {}).values()):
            p.kill()
        _pool = None
        return default


def check_extract(extract: str) -> None:
    """Raises `BadInput` (one line, naming the valid rules) unless `extract` is one of `EXTRACT_RULES`."""
    if extract not in EXTRACT_RULES:
        raise BadInput(f"--extract must be one of {', '.join(EXTRACT_RULES)}, got {extract!r} (boxed: only a "
                       f"closed \\boxed{{}} counts; any: fall back to math-verify's extraction)")


def grade(gold: str, completion: str, extract: str = "boxed", timeout_s: int = TIMEOUT_S) -> Verdict:
    """Grade one completion against a gold answer (the protocol in this module's docstring).

    Args:
        gold: the reference answer (LaTeX or plain), or a reference solution holding `\\boxed{}`.
        completion: the model's text.
        extract: `"boxed"`: only a closed box counts, no box grades wrong; `"any"`: without a box, math-verify's
            extraction over the whole text.
        timeout_s: seconds allowed for each parse and for verify; a timeout grades as incorrect.

    Returns:
        `Verdict(correct, extracted)`.

    Raises:
        BadInput: an unknown `extract` rule.
    """
    check_extract(extract)
    return _call(_grade, (gold, completion, extract, timeout_s), 3 * timeout_s, Verdict(False, None))


def answer_classes(answers: Sequence[str | None], timeout_s: int = TIMEOUT_S) -> list[int]:
    """Group extracted answers into equivalence classes for maj@k's vote.

    Each answer is compared with one representative per class found so far (the class's first answer, as gold),
    in order of first appearance, and joins the first class math-verify finds it equivalent to; string-identical
    answers share a class without a check, and each distinct string is parsed once. Every check runs under
    `timeout_s` (a timeout counts as different). `0.50`, `2/4` and `x = 1/2` fall in one class.

    Args:
        answers: n extracted answers (`Verdict.extracted`), None for a completion without one.
        timeout_s: seconds per parse and per verify.

    Returns:
        n class indices (0, 1, ... in order of first appearance); -1 for None.
    """
    answers = list(answers)
    distinct = len(set(a for a in answers if a is not None))
    fallback = [-1 if a is None else i for i, a in enumerate(answers)]  # timed out in a worker: each its own class
    return _call(_classes, (answers, timeout_s), 3 * timeout_s * (distinct + 1) ** 2, fallback)
