"""The bottom layer: config composition and schemas, shared value checks, the run directory, errors, units."""
