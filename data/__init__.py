"""Market data: the panel, local and bundled datasets, and stock pools."""

from finrl_lab.data.local import load_bundled, load_panel, resolve_data
from finrl_lab.data.panel import Panel, periods_per_year
from finrl_lab.data.pools import Pool, resolve_pool, shipped_pools

__all__ = [
    "Panel",
    "Pool",
    "load_bundled",
    "load_panel",
    "periods_per_year",
    "resolve_data",
    "resolve_pool",
    "shipped_pools",
]
