"""Config composition and validation: the one module that talks to Hydra's compose API.

`compose()` turns Hydra overrides (`optimizer=adamw optimizer.lr=1e-5`) into one resolved
`DictConfig` for one run, typed by the schemas of `rlvr_cli.core.schema` (OmegaConf structured configs: `abc`
for an integer fails here); `validate()` applies the ranges declared beside the schema fields and the checks
that span several groups. Both run before any model is loaded, and both raise `BadInput` with a one-line
message. Sweeps run the same composition under `@hydra.main` (Hydra launchers exist only there).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core import schema
from rlvr_cli.core.checks import check_rank
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.groups import check_config_dirs, config_dir, group_options, user_config_dir
from rlvr_cli.core.run_config import SAVE_FORMATS
from rlvr_cli.core.schema import DTYPES
from rlvr_cli.core.targets import check_run_config

if TYPE_CHECKING:
    from rlvr_cli.core.run_config import RunConfig

__all__ = ["DTYPES", "GROUPS", "MOVED_KEYS", "SAVE_FORMATS", "Composer", "compose", "compose_run", "config_dir",
           "group_options", "quote_value", "run_config", "validate"]

#: The config groups, which are also the sweep axes.
GROUPS = ("model", "data", "optimizer", "adapter", "grpo", "distributed", "generation", "logger")
#: Old override names -> their GRPOConfig names (the trainer settings moved out of conf/optimizer/ into grpo).
MOVED_KEYS = {f"optimizer.{k}": f"grpo.{k}" for k in ("weight_decay", "lr_scheduler_type", "warmup_steps",
                                                       "max_grad_norm")}
#: Old dtype keys, now the one `precision` key (`rlvr_cli.core.precision`): the message of their refusal.
PRECISION_KEYS = {
    "model.dtype": "model.dtype is now the top-level precision: precision=fp32, precision=bf16-mixed (fp32 weights, "
                   "bf16 compute), precision=bf16-true (bf16 weights) or precision=fp16-mixed",
    "distributed.mixed_precision": "distributed.mixed_precision is now the top-level precision: precision=bf16-mixed, "
                                   "precision=fp16-mixed or precision=fp32",
}


def plain(node: Any) -> Any:
    """A config node as plain Python: a `DictConfig`/`ListConfig` becomes dicts and lists with its interpolations
    resolved (`OmegaConf.to_container`); anything else (a dict, a list, None) is deep-copied. The one way a module
    below the CLI turns a node into the dict a library takes (TRL, accelerate, DeepSpeed, a torch optimizer)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return copy.deepcopy(node)


def quote_value(text: str) -> str:
    """`text` as one quoted value of Hydra's override grammar, whatever it holds (`[`, `,`, `=`, spaces, quotes):
    a quote is escaped, and so is a run of backslashes before a quote or at the end
    (https://hydra.cc/docs/advanced/override_grammar/basic/#quoted-values)."""
    text = re.sub(r"(\\+)('|$)", lambda m: m.group(1) * 2 + m.group(2), text)
    return "'" + text.replace("'", "\\'") + "'"


@contextmanager
def hydra_session() -> Iterator[Any]:
    """Hydra initialized for one composition (`hydra.initialize_config_dir`, a context: nothing global stays) on the
    packaged config directory, with `$RLVR_CONFIG_DIR` before it in the config search path: a user's option file
    is found first, beside rlvr's, and one of the same name replaces rlvr's (`train.yaml` included). Hydra 1.3's
    public API takes one directory; the user's is prepended to the loader's `ConfigSearchPath` as a
    `SearchPathPlugin` would (https://hydra.cc/docs/advanced/search_path/), and its sources rebuilt.

    Yields:
        Hydra's config loader (`hydra._internal.config_loader_impl.ConfigLoaderImpl`), for `Composer`.

    Raises:
        BadInput: `$RLVR_CONFIG_DIR` is not a directory (`rlvr_cli.core.groups.check_config_dirs`).
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_config_dirs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="rlvr"):
        loader = GlobalHydra.instance().hydra.config_loader
        user = user_config_dir()
        if user is not None:
            loader.config_search_path.prepend(provider="rlvr-user", path=f"file://{user.as_posix()}")
            loader.repository.initialize_sources(loader.config_search_path)
        yield loader


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose one run's config from `conf/<config_name>.yaml` and Hydra overrides, resolved.

    Args:
        overrides: Hydra override strings, e.g. `["optimizer=adamw", "optimizer.lr=1e-5"]`.
        config_name: the primary config file, without `.yaml`.

    Returns:
        The composed config with every interpolation resolved and every value typed by
        `rlvr_cli.core.schema.conform` (Hydra's Compose API, https://hydra.cc/docs/advanced/compose_api/, then
        OmegaConf structured configs, https://omegaconf.readthedocs.io/en/2.3_branch/structured_config.html).

    Raises:
        BadInput: a `_target_` rlvr would not build (`rlvr_cli.core.targets.check_run_config`), an unknown
            group option (the message lists the valid ones), an unknown key, an
            override that does not parse, a config group set to null, an interpolation that fails, a value of
            the wrong type (`seed=abc`: the message names the key, what it must be and an example), or a trainer
            setting under its old name (`optimizer.weight_decay`; the message names `grpo.weight_decay`, see
            `MOVED_KEYS`; `model.dtype` and `distributed.mixed_precision` name `precision`, `PRECISION_KEYS`).
    """
    from hydra import compose as hydra_compose
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    overrides = list(overrides)
    for o in overrides:  # trainer settings that left the optimizer files for the grpo group
        key = o.lstrip("+~").split("=", 1)[0]
        if key in MOVED_KEYS:
            raise BadInput(f"{key} is now {MOVED_KEYS[key]} (a trainer setting, not an optimizer argument); "
                           f"write {MOVED_KEYS[key]}=VALUE")
        if key in PRECISION_KEYS:
            raise BadInput(PRECISION_KEYS[key])
    try:
        with hydra_session():
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as e:
        group = (e.missing_cfg_file or "").split("/")[0]
        if group in GROUPS:
            bad = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith(f"{group}=")), "?")
            raise BadInput(
                f"unknown {group} '{bad}'; valid options: {', '.join(group_options(group))}"
            ) from None
        raise BadInput(one_line(e)) from None
    except OverrideParseException as e:
        raise BadInput(f"cannot parse override: {one_line(e)}") from None
    except ConfigCompositionException as e:
        msg = one_line(e)
        key = re.search(r"Could not override '([^']+)'", msg)
        if key and "not in struct" in str(e.__cause__ or e):
            raise BadInput(
                f"unknown key '{key.group(1)}'; to add a new key write +{key.group(1)}=VALUE"
            ) from None
        raise BadInput(msg) from None
    except ValueError as e:  # Hydra's defaults list refuses e.g. `grpo=null` with a bare ValueError
        group = next((o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0] in GROUPS
                      and o.split("=", 1)[-1] in ("null", "")), None)
        if group:
            raise BadInput(f"{group} is a config group: pick one of its options, {', '.join(group_options(group))}; "
                           f"e.g. {group}={group_options(group)[0]}") from None
        raise BadInput(f"cannot compose the config: {one_line(e)}") from None
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # omegaconf raises several interpolation errors
        raise BadInput(f"cannot resolve config: {one_line(e)}") from None
    if config_name != "train":
        return cfg
    check_run_config(cfg)
    return schema.conform(cfg)


def validate(cfg: DictConfig, conformed: bool = False) -> None:
    """Check the values of a composed run config; raise before any model is loaded or any run directory exists
    (`run_config`, its result dropped: for callers that keep the composed config, `rlvr config show`'s).

    Raises:
        BadInput: naming the first bad value and the fix, in one line.
    """
    run_config(cfg, conformed=conformed)


def run_config(cfg: DictConfig, conformed: bool = False) -> RunConfig:
    """A composed run config validated and made the frozen, typed `rlvr_cli.core.run_config.RunConfig` that every
    module below the CLI reads: the one place a run config is validated.

    First the types (`rlvr_cli.core.schema.conform`, so a config built by hand is checked too), then the range of
    every schema field, declared beside it (`rlvr_cli.core.schema.check`: e.g. `seed >= 0`, `optimizer.lr` finite
    and > 0, `grpo.num_generations >= 2`, `grpo.max_steps >= 1`, `precision` one of
    `rlvr_cli.core.precision.PRECISIONS`, `eval.k >= 1`, `logger.mode`, the `sparsity` block, `save_format`), that
    an adapter file declares `adapter.r` (null for a method without a rank: IA3, LN tuning; which methods have one
    is checked against the PEFT class by `rlvr_cli.models.adapters.peft_config`), then the typed config's own checks
    across fields, beside its fields (`RunConfig.from_node`: `Grpo`'s batch of whole groups and the fields other
    settings own, `RunConfig`'s `run_name` and `save_format`; a key no field reads).

    Args:
        cfg: a composed run config (`compose`).
        conformed: True when `cfg` is what `compose` (or a `Composer`) returned, unchanged since: its types were
            checked there, and typing it again (`conform` is idempotent) is skipped (about 20 ms a config).

    Raises:
        BadInput: naming the first bad value and the fix, in one line.
    """
    from rlvr_cli.core.run_config import RunConfig

    if not conformed:
        check_run_config(cfg)
        cfg = schema.conform(cfg)
    schema.check(cfg)
    if cfg.adapter.name != "full" and "r" not in cfg.adapter:  # removed (`~adapter.r`); a rankless method has null
        check_rank(None)
    return RunConfig.from_node(OmegaConf.to_container(cfg, resolve=True))


def compose_run(overrides: Sequence[str] = ()) -> RunConfig:
    """`compose` then `run_config`: the typed, validated config of one `rlvr train` run.

    Args:
        overrides: Hydra override strings, e.g. `["optimizer=adamw", "optimizer.lr=1e-5"]`.

    Raises:
        BadInput: `compose`'s and `validate`'s errors, one line each.
    """
    return run_config(compose(overrides), conformed=True)


class Composer:
    """`compose` for many override lists at once (a sweep's cells), each result and each error `compose`'s own.

    Hydra composes in two steps (`ConfigLoaderImpl._load_configuration_impl`, hydra-core 1.3,
    hydra/_internal/config_loader_impl.py): the defaults list, which only the overrides that name a config group
    shape (`optimizer=adamw`; Hydra's rule: the key is a group of the config repository and the value no mapping),
    is merged into one config (about 60 ms, most of it Hydra's own `hydra/config` tree, which `compose` drops);
    then every other override (`optimizer.lr=1e-5`, `+grpo.beta=0.04`, `~key`) is applied to it in order, in struct
    mode, by `ConfigLoaderImpl._apply_overrides_to_config`. A Composer runs the first step once per distinct tuple of
    group overrides, with Hydra's own functions but without the `hydra` tree (`_base`), and keeps the result; per
    call it copies it (a pickle round trip, OmegaConf's own serialisation: 7x faster than `copy.deepcopy`), applies
    the other overrides with that same Hydra function, then resolves and types it as `compose` does. Each config
    file is read once per Composer (its sources' `load_config` results are kept and handed out as copies). An
    override list it does not cover (a sweep value `a=1,2`, a `hydra.*` or `group@package` override, a renamed key)
    and any failure at all go to `compose` itself, which then returns the config or raises its usual error.

    Keep one Composer for one batch of configs (it assumes the config files do not change while it lives). Its
    configs equal `compose`'s node for node, types and flags included (tests/test_sweep.py compares them on
    shipped sweeps' cells and on failing overrides).

    Args:
        config_name: the primary config file, without `.yaml` (`compose`'s).
    """

    def __init__(self, config_name: str = "train") -> None:
        self.config_name = config_name
        self._bases: dict[tuple[str, ...], bytes] = {}  # group overrides -> the composed config, unresolved, pickled
        self._files: dict[tuple[str, ...], bytes] = {}  # (source, config path) -> its pickled `ConfigResult`
        self._parsed: dict[str, object] = {}  # override string -> Hydra's `Override`
        self._is_group: dict[str, bool] = {}
        self._hydra: tuple[object, object] | None = None  # (Hydra's override parser, its config repository)

    def __call__(self, overrides: Sequence[str]) -> DictConfig:
        """The config of `overrides`: what `compose(overrides, config_name)` returns.

        Args:
            overrides: Hydra override strings, e.g. `["optimizer=adamw", "optimizer.lr=1e-5"]`.

        Raises:
            BadInput: `compose`'s error for these overrides (the same one line).
        """
        overrides = list(overrides)
        try:
            cfg = self._from_base(overrides)
        except Exception:  # whatever failed, compose says it in its own words
            cfg = None
        return compose(overrides, self.config_name) if cfg is None else cfg

    def _hydra_parts(self) -> tuple[object, object]:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if self._hydra is None:
            with hydra_session() as loader:
                _, repo = loader._parse_overrides_and_create_caching_repo(self.config_name, [])
            self._hydra = (OverridesParser.create(), repo)
        return self._hydra

    def _kept(self, source: object) -> Callable[[str], object]:
        """`source.load_config`, each result kept (pickled) and handed out as a fresh copy."""
        import pickle

        load = source.load_config

        def load_config(config_path: str) -> object:
            key = (type(source).__name__, source.provider, source.path, config_path)
            if key not in self._files:
                result = load(config_path)
                try:
                    self._files[key] = pickle.dumps(result)
                except Exception:  # not picklable: read it each time
                    return result
            return pickle.loads(self._files[key])

        return load_config

    def _base(self, choice: tuple[str, ...]) -> DictConfig:
        """The config of the group overrides `choice` before the other overrides, unresolved, in struct mode: what
        Hydra's compose holds at that point, without its `hydra` node (which `compose` drops). Hydra's own steps
        (`ConfigLoaderImpl._load_configuration_impl`), with `prepend_hydra=False`: the `hydra/config` tree is
        most of the time of a composition and none of the result; a config that reaches into `hydra.*` itself is
        composed the whole way (`hydra.compose`)."""
        import pickle

        from hydra import compose as hydra_compose
        from hydra._internal.defaults_list import create_defaults_list

        if choice not in self._bases:
            with hydra_session() as loader:
                for source in loader.repository.get_sources():
                    source.load_config = self._kept(source)  # this Hydra instance's, gone with the context
                parsed, repo = loader._parse_overrides_and_create_caching_repo(self.config_name, list(choice))
                defaults = create_defaults_list(repo=repo, config_name=self.config_name, overrides_list=parsed,
                                                prepend_hydra=False, skip_missing=False)
                cfg = loader._compose_config_from_defaults_list(defaults=defaults.defaults, repo=repo)
                if "hydra" in cfg:
                    cfg = hydra_compose(config_name=self.config_name, overrides=list(choice))
            OmegaConf.set_struct(cfg, True)
            self._bases[choice] = pickle.dumps(cfg)
        return pickle.loads(self._bases[choice])

    def _from_base(self, overrides: list[str]) -> DictConfig | None:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        if any(o.lstrip("+~").split("=", 1)[0] in {**MOVED_KEYS, **PRECISION_KEYS} for o in overrides):
            return None
        parser, repo = self._hydra_parts()
        groups, values = [], []
        for line in overrides:
            if line not in self._parsed:
                (self._parsed[line],) = parser.parse_overrides([line])
            o = self._parsed[line]
            key = o.key_or_group
            if o.is_sweep_override() or o.is_hydra_override() or o.package is not None or key == "hydra":
                return None
            if key not in self._is_group:
                self._is_group[key] = repo.group_exists(key)
            (groups if self._is_group[key] and not isinstance(o.value(), dict) else values).append(o)
        cfg = self._base(tuple(o.input_line for o in groups))
        OmegaConf.clear_cache(cfg)  # resolvers' cached values (`${now:...}`) are this config's own
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        OmegaConf.resolve(cfg)
        if self.config_name != "train":
            return cfg
        check_run_config(cfg)
        return schema.conform(cfg)
