"""Training problems: generated arithmetic, JSONL files and hub datasets, one local-or-hub rule, prompts."""
