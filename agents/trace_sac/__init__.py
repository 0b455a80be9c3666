"""Trace-SAC: Soft Actor-Critic with soft Retrace targets."""
