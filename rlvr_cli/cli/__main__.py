"""`python -m rlvr_cli.cli ...` is `rlvr ...` (used by sweep jobs and under torchrun).

The guard matters: vLLM starts its engine processes with multiprocessing's `spawn`, which imports the main module
again in each child (as `__mp_main__`); without it every child would run the command anew.
"""

from rlvr_cli.cli.main import run

if __name__ == "__main__":
    run()
