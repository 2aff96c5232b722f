"""A typed config dataclass from a composed config node, and back: `setting` (a field with its default, config key
and range), `from_node` and `to_node`. The dataclasses built this way: `rlvr_cli.core.run_config` (the run config's
groups) and `rlvr_cli.core.modes` (the distributed mode and the generation backend).

Why not OmegaConf's own `OmegaConf.to_object` over structured configs
(https://omegaconf.readthedocs.io/en/2.3_branch/structured_config.html#creating-a-structured-config-from-an-object):
a structured config accepts only the keys its dataclass names, while a group hands a library every key its file
sets (any PEFT field, any `GRPOConfig` field, any constructor argument). `from_node` gives the keys a class names to
its fields and the rest to the one mapping the class names in `REST`. The types and ranges are still OmegaConf's to
check, on the schemas `rlvr_cli.core.schema` derives from these dataclasses, before `from_node` runs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.rules import Rule

__all__ = ["from_node", "setting", "to_node"]


def from_node(cls: type, node: Mapping[str, Any] | None, where: str) -> Any:
    """Build the frozen dataclass `cls` from a composed, validated config node (plain dicts and lists).

    Every key of `node` goes to the field of its name (a field's `metadata["key"]` names a key that is no Python
    name: `_target_`); a field whose key is absent keeps its default. Lists become tuples in typed fields. Keys no
    field names go to the field `cls.REST` names (a mapping handed to a library), or are refused. A nested
    dataclass field (`Data.hub`) is built the same way from its sub-node.

    Args:
        cls: one of this module's dataclasses.
        node: the group's node (`OmegaConf.to_container` of the composed config's node), or None for `{}`.
        where: the node's key in the run config, for messages (`optimizer`).

    Raises:
        BadInput: a key the class neither names nor passes on (`cls.REST` is None), or a required field (no
            default) the node lacks; the message names the key.
    """
    node = dict(node or {})
    rest_name = getattr(cls, "REST", None)
    kwargs: dict[str, Any] = {}
    taken: set[str] = set()
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        if f.name == rest_name or key not in node:
            continue
        value = node[key]
        taken.add(key)
        nested = f.metadata.get("nested")
        if nested is not None and isinstance(value, Mapping):
            value = from_node(nested, value, f"{where}.{key}")
        elif isinstance(value, list) and f.metadata.get("tuple", True):
            value = tuple(value)
        kwargs[f.name] = value
    rest = {k: copy.deepcopy(v) for k, v in node.items() if k not in taken}
    if rest_name is not None:
        kwargs[rest_name] = rest
    elif rest:
        key = next(iter(rest))
        raise BadInput(f"{where}.{key} is not a setting rlvr reads; drop it (the keys of {where}: "
                       f"{', '.join(f.metadata.get('key', f.name) for f in dataclasses.fields(cls))})")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field the node lacks
        missing = [f.metadata.get("key", f.name) for f in dataclasses.fields(cls) if f.name not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        raise BadInput(f"{where} needs {', '.join(f'{where}.{k}' for k in missing) or str(e)}") from None


def to_node(obj: Any) -> Any:
    """`from_node`'s inverse: a typed config (or any value in it) as the plain node it reads, keys under their
    config names (`_target_`), tuples as lists, the `REST` mapping's keys beside the fields. What `config.yaml` of a
    run directory records: every setting in effect, defaults included."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        rest_name = getattr(type(obj), "REST", None)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.name != rest_name:
                out[f.metadata.get("key", f.name)] = to_node(getattr(obj, f.name))
        if rest_name is not None:
            out.update({k: to_node(v) for k, v in getattr(obj, rest_name).items() if k not in out})
        return out
    if isinstance(obj, Mapping):
        return {k: to_node(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_node(v) for v in obj]
    return obj


def setting(default: Any = dataclasses.MISSING, *, key: str | None = None, nested: type | None = None,
            keep_list: bool = False, node_type: Any = None, **rule: Any) -> Any:
    """A typed field of the run config: its default, and its range beside it.

    Args:
        default: the value when the composed node lacks the key (none: the key is required); immutable (a field
            with a mutable default is a plain `dataclasses.field(default_factory=...)`).
        key: the config key when it is no Python name (`_target_`); default the field's name.
        nested: the dataclass a sub-node becomes (`Data.hub`).
        keep_list: a list stays a list (it goes to a library), not a tuple.
        node_type: the type OmegaConf checks the composed value against, where it differs from the field's
            (`eval.benchmarks`: a list, or a comma-separated string the field splits).
        rule: the range, `rlvr_cli.core.rules.Rule`'s keywords (`ge`, `gt`, `le`, `lt`, `choices`, `required`,
            `why`, `fix`, `example`, `check`), applied by `rlvr_cli.core.schema.check` with its one-line error.

    Returns:
        a `dataclasses.field` with the rule and the rest in its metadata.
    """
    metadata: dict[str, Any] = {"rule": Rule(**rule)} if rule else {}
    for name, value in (("key", key), ("nested", nested), ("node_type", node_type)):
        if value is not None:
            metadata[name] = value
    if keep_list:
        metadata["tuple"] = False
    return field(default=default, metadata=metadata)
