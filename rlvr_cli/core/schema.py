"""The schemas a composed run config is typed and range-checked against, derived from the typed run config.

Each dataclass of `rlvr_cli.core.run_config` (`Model`, `Data`, `Optimizer`, `Adapter`, `Grpo`, `Distributed`,
`Generation`, `Logger`, `Eval`, `Sparsity`, `Trial`, and `RunConfig` at the top) holds each field's type, default,
unit and range (`setting(...)`), and the typed keys of the mapping it hands to a library (`LIBRARY_KEYS`:
`momentum`, `betas`, `lora_alpha`, `max_completion_length`, ...). `schema_of` turns one into an OmegaConf structured
config (https://omegaconf.readthedocs.io/en/2.3_branch/structured_config.html) with the same keys, types and rules
and no defaults: `conform` merges a composed config into it with `OmegaConf.merge(OmegaConf.structured(schema),
values)`, so OmegaConf itself rejects `abc` for an `int` or a `float` and converts what it may (`'8'` -> 8, 1 -> 1.0
for a float field), and `check` applies each field's `rlvr_cli.core.rules.Rule` (`ge`, `gt`, `le`, `lt`,
`choices`, or a shared check of `rlvr_cli.core.checks`). Type and range errors give the same one-line message,
built from the rule: the key, what it must be, the value, and a fix.

Why the schemas are applied after composition and not as Hydra structured configs in the groups' defaults lists
(https://hydra.cc/docs/tutorials/structured_config/schema/): a schema in a defaults list adds every one of its
fields to every file of the group, but the files of one group differ (SGD has `momentum`, Adam has `betas`; the
arithmetic data set has `num_samples`, the file-backed ones `path`), and GRPO, PEFT and the optimizer classes
take fields the schema cannot list. So the schemas here type the keys a composed node HAS: a field absent from the
node stays absent (the run config's defaults fill it later), and a key the schema does not name passes through
unchanged (`+grpo.ANY_GRPOCONFIG_FIELD=...` is checked by TRL's `GRPOConfig`, PEFT fields by PEFT, constructor
arguments by the optimizer's constructor). Hydra's struct mode still rejects a misspelled key that was not added with
`+`.

A new optimizer, data set or adapter file needs no change here; a new field worth a type and a range is one
`setting(...)` (or one `LIBRARY_KEYS` entry) in `rlvr_cli.core.run_config`.
"""

import copy
import dataclasses
import functools
import re
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.rules import check_node, fail, fields_of, join_key, optional_of
from rlvr_cli.core.run_config import Hub, RunConfig

#: Weight dtypes a model loads in (`rlvr eval --dtype`).
DTYPES = ("float32", "bfloat16", "float16")


# --- the schemas -------------------------------------------------------------------------------------------------


def _node_type(tp: Any) -> Any:
    """The type OmegaConf checks for a field of type `tp`: a tuple is a list in a config, a dict is whatever the
    library takes (`Any`), a run config dataclass is its schema."""
    base, optional = optional_of(tp)
    origin = typing.get_origin(base)
    if origin is tuple:
        base = list[typing.get_args(base)[0]]
    elif base is dict or origin is dict:
        return Any
    elif dataclasses.is_dataclass(base):
        base = schema_of(base)
    return base | None if optional else base


@functools.cache
def schema_of(cls: type) -> type:
    """The schema of a run config dataclass: an OmegaConf structured config with a field per key of a composed node,
    each with no default (`MISSING`: an absent key stays absent), its config type and its `Rule` in `metadata`.

    Its fields, in order: `cls`'s own, under their config keys (`_target_`), without the mapping it hands to a library
    (`cls.REST`); then that mapping's typed keys (`cls.LIBRARY_KEYS`). Built once per class.

    Args:
        cls: a dataclass of `rlvr_cli.core.run_config` (`RunConfig`, `Optimizer`, `Hub`, ...).

    Returns:
        a dataclass named `<cls>Schema` (`OptimizerSchema`).
    """
    hints = typing.get_type_hints(cls)
    rest = getattr(cls, "REST", None)
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.name == rest:
            continue
        tp = f.metadata.get("node_type", _node_type(hints[f.name]))
        metadata = {"rule": f.metadata["rule"]} if "rule" in f.metadata else {}
        fields.append((f.metadata.get("key", f.name), tp, dataclasses.field(default=MISSING, metadata=metadata)))
    for key, lib in getattr(cls, "LIBRARY_KEYS", {}).items():
        metadata = {"rule": lib.rule} if lib.rule is not None else {}
        fields.append((key, lib.type, dataclasses.field(default=MISSING, metadata=metadata)))
    schema = dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)
    schema.__module__ = __name__
    return schema


#: A whole `rlvr train` config's schema (`RunConfig`'s). Field order is the order of the checks.
TrainSchema = schema_of(RunConfig)
#: `data.hub`'s schema.
HubSchema = schema_of(Hub)
#: Config group (and `train.yaml` block) -> its schema: the groups of `rlvr_cli.core.compose.GROUPS` plus `eval`,
#: `sparsity` and `trial`.
GROUP_SCHEMAS: dict[str, type] = {name: schema_of(cls) for name, cls in RunConfig.GROUPS.items()}


def schema_fields(schema: type) -> tuple[str, ...]:
    """The keys a schema types, in order (`dataclasses.fields`)."""
    return tuple(f.name for f in dataclasses.fields(schema))


# --- applying them ------------------------------------------------------------------------------------------------


def conform_rewards(rewards: Any, where: str = "rewards") -> Any:
    """Type the reward weights: every leaf of `rewards` (a nested key is a dotted import path,
    `+rewards.pkg.module.fn=1.0`) must be a number; OmegaConf converts it into a `DictConfig` of floats.

    Returns:
        the same nesting, with float weights.

    Raises:
        BadInput: a weight that is not a number, naming its key.
    """
    if not isinstance(rewards, Mapping):
        return rewards  # null or missing: the reward builder says what it needs
    out: dict[str, Any] = {}
    for name, weight in rewards.items():
        key = join_key(where, str(name))
        if isinstance(weight, Mapping):
            out[name] = conform_rewards(weight, key)
            continue
        typed = DictConfig({}, key_type=str, element_type=float)
        try:
            typed[str(name)] = weight
        except OmegaConfBaseException:
            raise BadInput(f"{key} must be a number (its weight), got {weight!r}; e.g. {key}=1.0") from None
        out[name] = typed[str(name)]
    return out


#: `_typed`'s memo: (schema, `_frozen` values) -> the typed values; cleared when it reaches `_TYPED_MAX` entries.
_TYPED: dict[tuple[type, Any], dict[str, Any]] = {}
_TYPED_MAX = 4096
#: `OmegaConf.structured(schema)` per schema (1.3 ms to build, 0.4 ms to copy).
_STRUCTURED: dict[type, DictConfig] = {}


def _frozen(value: Any) -> Any:
    """A hashable key that tells apart what OmegaConf may type differently: each scalar with its type (`1`, `1.0`
    and `True` are equal in Python, not in a schema), mappings and lists in order; None for anything else."""
    if type(value) in (str, int, float, bool, type(None)):
        return type(value), repr(value)
    if isinstance(value, Mapping):
        items = tuple(((type(k), repr(k)), _frozen(v)) for k, v in value.items())
        return None if any(v is None for _, v in items) else ("{}", items)
    if isinstance(value, (list, tuple)):
        items = tuple(_frozen(v) for v in value)
        return None if any(v is None for v in items) else (type(value), items)
    return None


def _typed(schema: type, flat: dict[str, Any]) -> dict[str, Any]:
    """`flat`'s values typed by `schema`: merged into `OmegaConf.structured(schema)` (which raises on a wrong type),
    as plain values. Memoized per schema and values (a pure function of both): the nodes that many configs share, a
    sweep's cells, are typed once (the merge is most of `conform`'s 20 ms). Failures are not kept."""
    if schema not in _STRUCTURED:  # `merge` copies its first argument: the kept one is never changed
        _STRUCTURED[schema] = OmegaConf.structured(schema)
    key = _frozen(flat)
    if key is None:
        return OmegaConf.to_container(OmegaConf.merge(_STRUCTURED[schema], flat))
    if (schema, key) not in _TYPED:
        if len(_TYPED) >= _TYPED_MAX:
            _TYPED.clear()
        _TYPED[schema, key] = OmegaConf.to_container(OmegaConf.merge(_STRUCTURED[schema], flat))
    return copy.deepcopy(_TYPED[schema, key])


def _conform(node: Mapping[str, Any], schema: type, where: str) -> dict[str, Any]:
    fields = fields_of(schema)
    nested = {k: tp for k, (tp, _, _) in fields.items() if dataclasses.is_dataclass(tp)}
    flat = {k: v for k, v in node.items() if k in fields and not (k in nested and isinstance(v, Mapping))
            and k != "rewards"}
    try:
        typed = _typed(schema, flat)
    except OmegaConfBaseException as e:
        key = re.split(r"[.\[]", e.full_key or str(e.key), maxsplit=1)[0]
        if key not in flat:
            raise BadInput(f"{where or 'config'}: {str(e).splitlines()[0]}") from None
        fail(join_key(where, key), flat[key], *fields[key])
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in flat:
            out[k] = typed[k]
        elif k in nested and isinstance(v, Mapping):
            out[k] = _conform(v, nested[k], join_key(where, k))
        elif k == "rewards" and schema is TrainSchema:
            out[k] = conform_rewards(v)
        else:
            out[k] = v  # a key the schema does not name: checked by whatever consumes it
    return out


def conform(cfg: DictConfig | Mapping[str, Any], schema: type = TrainSchema) -> DictConfig:
    """Type a composed config against a schema: OmegaConf validates and converts every key the schema names.

    Merges the config's values into `OmegaConf.structured(schema)` (OmegaConf's structured configs,
    https://omegaconf.readthedocs.io/en/2.3_branch/structured_config.html), one node at a time; keys the schema
    does not name pass through, keys the config lacks stay absent. Interpolations are resolved first.

    Args:
        cfg: a composed config (`rlvr_cli.core.compose.compose`) or a plain mapping.
        schema: the dataclass of its top level; `TrainSchema` for a run.

    Returns:
        a new struct-mode `DictConfig` with the typed values (e.g. `grpo.max_steps='5'` -> 5).

    Raises:
        BadInput: the first value of the wrong type, as `KEY must be WHAT, got VALUE; FIX` (see `fail`).
    """
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    out = OmegaConf.create(_conform(node, schema, ""))
    OmegaConf.set_struct(out, True)
    return out


def check(cfg: DictConfig | Mapping[str, Any], schema: type = TrainSchema) -> None:
    """Apply every field's `Rule` to a typed config (`conform`'s result): bounds, choices, the shared checks of
    `rlvr_cli.core.checks`, and required keys. Keys the config lacks are not checked unless required.

    Args:
        cfg: a config typed by `conform`.
        schema: the dataclass of its top level; `TrainSchema` for a run.

    Raises:
        BadInput: the first value out of range, in the schema's field order, as `KEY must be WHAT, got VALUE; FIX`.
    """
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    check_node(node, schema, "")


def typed(cfg: DictConfig | Mapping[str, Any], schema: type = TrainSchema) -> DictConfig:
    """`conform` then `check`: a config typed against a schema and every field's rule applied.

    Raises:
        BadInput: as `conform` (a value of the wrong type) and `check` (a value out of range).
    """
    out = conform(cfg, schema)
    check(out, schema)
    return out
