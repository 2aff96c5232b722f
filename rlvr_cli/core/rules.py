"""The range of a config field and its one-line error: `Rule` (bounds, choices, a shared check, a fix), `LibraryKey`
(a typed key of a mapping handed to a library), `fail` (the message: `KEY must be WHAT, got VALUE; FIX`) and
`check_node` (every field's rule applied to a typed node). The fields that carry them: `rlvr_cli.core.run_config`;
the schemas that apply them: `rlvr_cli.core.schema`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from rlvr_cli.core.errors import BadInput

#: A number kept as written: an int stays an int (PEFT's `lora_alpha`, transformers' `warmup_steps`).
Number = int | float


@dataclass(frozen=True)
class Rule:
    """The range of one schema field, and how its one-line error reads.

    Attributes:
        ge, gt, le, lt: bounds (>=, >, <=, <); None: no bound.
        choices: the allowed values of a string field (a `GroupOptions` for a group's file names).
        required: the key must be present and not null (else only a present value is checked).
        why: a short reason, printed in parentheses after the bounds.
        fix: the fix printed after the value; default `e.g. KEY=EXAMPLE`.
        example: a valid value for the default fix.
        check: one of `rlvr_cli.core.checks` (`check(value, where)`, raising `BadInput`), used instead of the bounds.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Sequence[str] | None = None
    required: bool = False
    why: str = ""
    fix: str = ""
    example: Any = None
    check: Callable[[Any, str], Any] | None = None


@dataclass(frozen=True)
class LibraryKey:
    """A key of a mapping rlvr hands to a library unchanged (an optimizer's constructor argument, a PEFT or
    `GRPOConfig` field) that still gets a type and a range before any model loads, so a bad value fails in one
    line and not inside the library after minutes of loading.

    Attributes:
        type: what OmegaConf checks and converts the value to (`float`, `list[float]`, `Any`: the library's check
            only).
        rule: its range (`Rule`); None: its type only.
    """

    type: Any
    rule: Rule | None = None


def library_key(tp: Any, **kwargs: Any) -> LibraryKey:
    """A `LibraryKey` of type `tp` whose `Rule` takes `kwargs` (`ge=0, example=0.9`; none: its type only)."""
    return LibraryKey(tp, Rule(**kwargs) if kwargs else None)


#: The largest seed of a run or an evaluation: numpy's generators take seeds in 0..2**32-1.
MAX_SEED = 2**32 - 1


def join_key(where: str, key: str) -> str:
    """The full key of `key` under `where` as a user writes it (`grpo` + `max_steps` -> `grpo.max_steps`)."""
    return f"{where}.{key}" if where else key


def optional_of(tp: Any) -> tuple[Any, bool]:
    """A field's type without `None`, and whether it may be None (`X | None`, `Optional[X]`)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return tp, False


def _noun(tp: Any) -> str:
    """What a value of type `tp` is, in words: `an integer`, `a number`, `a list of strings`, ..."""
    if tp is int:
        return "an integer"
    if tp in (float, Number):
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return "a list" if item is Any else f"a list of {_noun(item).split(' ', 1)[1]}s"
    if dataclasses.is_dataclass(tp):
        return "a mapping of keys to values"
    return "a value"


@functools.cache
def fields_of(schema: type) -> dict[str, tuple[Any, bool, Rule]]:
    """Name -> (type without Optional, optional, rule) of a schema's fields; computed once per schema class."""
    hints = typing.get_type_hints(schema)
    return {f.name: (*optional_of(hints[f.name]), f.metadata.get("rule", Rule())) for f in dataclasses.fields(schema)}


def fail(where: str, value: Any, tp: Any, optional: bool, r: Rule) -> typing.NoReturn:
    """Raise the one-line error of a bad value (wrong type or out of range) of schema field `where`.

    Args:
        where: the full key as the user writes it, e.g. `grpo.max_steps`.
        value: the value as given (before any conversion).
        tp, optional, r: the field's type (without Optional), whether null is allowed, and its `Rule`.

    Raises:
        BadInput: always; `KEY must be WHAT, got VALUE; FIX`.
    """
    if r.check is not None:
        r.check(value, where)  # raises with the shared check's own message
    if r.choices:
        what = f"one of {', '.join(r.choices)}"
    else:
        what = _noun(tp)
        limits = ((">=", r.ge), (">", r.gt), ("<=", r.le), ("<", r.lt))
        bounds = [f"{op} {b if isinstance(b, int) else format(b, 'g')}" for op, b in limits if b is not None]
        what += f" {' and '.join(bounds)}" if bounds else ""
    what += " or null" if optional else ""
    what += f" ({r.why})" if r.why else ""
    fix = r.fix or ("" if r.example is None else f"e.g. {where}={r.example}")
    raise BadInput(f"{where} must be {what}, got {value!r}{'; ' + fix if fix else ''}")


def _in_range(value: Any, r: Rule) -> bool:
    if r.choices is not None and value not in r.choices:
        return False
    if isinstance(value, float) and (r.ge, r.gt, r.le, r.lt) != (None,) * 4 and not math.isfinite(value):
        return False
    return ((r.ge is None or value >= r.ge) and (r.gt is None or value > r.gt)
            and (r.le is None or value <= r.le) and (r.lt is None or value < r.lt))


def check_node(node: Mapping[str, Any], schema: type, where: str) -> None:
    """Apply each field's `Rule` of `schema` to a typed `node` (nested schemas recursively), in field order.

    Args:
        node: the typed values (plain containers), keyed as the schema's fields; absent keys are checked only when
            their rule says `required`.
        schema: a schema dataclass (`rlvr_cli.core.schema`).
        where: the node's full key (`` at the top).

    Raises:
        BadInput: the first value out of range, as `fail` words it.
    """
    for k, (tp, optional, r) in fields_of(schema).items():
        key, value = join_key(where, k), node.get(k)
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            check_node(value, tp, key)
        elif value is None or value == "???":  # absent, null or missing (`???`)
            if r.required:
                fail(key, value, tp, optional, r)
        elif r.check is not None:
            r.check(value, key)
        elif not _in_range(value, r):
            fail(key, value, tp, optional, r)
