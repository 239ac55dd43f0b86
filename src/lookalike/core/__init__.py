"""Core utilities: input checks, errors, weights, config, runs, data roots. Torch-free at import."""
