"""Models by name: the embedded presets and their cache, loading, what a MODEL argument points at, state dicts,
PEFT adapters and sparse-delta checkpoints."""
