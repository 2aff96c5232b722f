"""`rlvr train`: the GRPO recipe, its callbacks, optimizers, rewards, tracking and multi-process runs."""
