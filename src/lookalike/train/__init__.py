"""Training engine, checkpoints and recipes."""
