"""`python -m rlvr_cli.cli ...` is `rlvr ...` (used by sweep jobs and under torchrun)."""

from rlvr_cli.cli.main import app

app()
