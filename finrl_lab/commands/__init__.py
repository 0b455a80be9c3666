"""Command groups of the finrl-lab CLI, one module each."""
