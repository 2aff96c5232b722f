"""rlvr: an experiment runner for reinforcement learning with verifiable rewards (GRPO) on language models.

The package is glue: TRL runs the GRPO loop, PEFT the adapters, math-verify the grading, Hydra the
configuration, W&B the tracking and Rich the terminal. Importing it imports none of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rlvr")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0+unknown"
