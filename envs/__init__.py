"""Gymnasium environments: portfolio management over stock pools."""
