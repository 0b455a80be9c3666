"""Training core: experiment configs, the runner, checkpoints and logging."""
