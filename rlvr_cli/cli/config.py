"""`rlvr config show [OVERRIDES...]`."""

from __future__ import annotations

from rlvr_cli.cli.options import JSON, OVERRIDES
from rlvr_cli.cli.output import bad_input_exits, console, print_json


def config_show(overrides: list[str] = OVERRIDES, as_json: bool = JSON) -> None:
    """Print the composed, resolved config of a run: YAML, or with --json one JSON document."""
    from omegaconf import OmegaConf

    from rlvr_cli.core.compose import compose

    with bad_input_exits():
        cfg = compose(overrides or [])
    if as_json:
        print_json(OmegaConf.to_container(cfg, resolve=True))
    else:
        console.print(OmegaConf.to_yaml(cfg), highlight=False, markup=False, end="")
