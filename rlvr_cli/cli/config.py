"""`rlvr config show [OVERRIDES...]`."""

from __future__ import annotations

from rlvr_cli.cli.options import OVERRIDES
from rlvr_cli.cli.output import bad_input_exits, console


def config_show(overrides: list[str] = OVERRIDES) -> None:
    """Print the composed, resolved config of a run."""
    from omegaconf import OmegaConf

    from rlvr_cli.core.config import compose

    with bad_input_exits():
        cfg = compose(overrides or [])
    console.print(OmegaConf.to_yaml(cfg), highlight=False, markup=False, end="")

