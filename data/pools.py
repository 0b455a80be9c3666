"""Stock pools: named ticker lists, a global pool (GSP) and its subsets (CSPs).

A pool file is YAML mapping each pool name to ``tickers`` and optionally a
``parent`` pool (which must contain every ticker) and a ``description``::

    my-banks:
      parent: sp20
      description: two banks
      tickers: [BAC, JPM]

The shipped pools live in ``finrl_lab/configs/pools``. A user names a pool, points
to a YAML file (``--pool my_pools.yaml`` or ``my_pools.yaml:my-banks``), or lists
tickers (``--pool AAPL,MSFT,KO``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from finrl_lab.errors import PoolError


@dataclass(frozen=True)
class Pool:
    """A named list of tickers; ``parent`` names the global pool it subsets."""

    name: str
    tickers: tuple[str, ...]
    parent: str | None = None
    description: str = ""
    origin: str = field(default="", compare=False)

    def mask(self, universe: Sequence[str]) -> np.ndarray:
        """Return a bool mask over ``universe``, True for tickers in this pool."""
        missing = [t for t in self.tickers if t not in set(universe)]
        if missing:
            raise PoolError(
                f"pool {self.name!r} names ticker(s) {', '.join(missing)} that are not "
                "in the global pool",
                f"the global pool has: {', '.join(universe)}",
            )
        chosen = set(self.tickers)
        return np.array([t in chosen for t in universe], dtype=bool)


def _shipped_pool_files() -> list[Path]:
    folder = resources.files("finrl_lab.configs") / "pools"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a mapping with the same key twice."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"key {', '.join(repeated)} appears more than once",
            node.start_mark,
        )
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_pool_file(path: str | Path) -> dict[str, Pool]:
    """Parse a pool YAML file into pools by name, checking parents and tickers.

    A parent must be defined in the same file or be a shipped pool; it must
    contain every ticker of its child, and parents may not form a cycle.
    """
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise PoolError(
            f"pool file {str(path)!r} does not exist", "check the path"
        ) from None
    except OSError as exc:
        raise PoolError(
            f"cannot read pool file {path}: {exc.strerror}", "check the path"
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise PoolError(
            f"invalid YAML in pool file {path}: {first}", "fix the syntax"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise PoolError(
            f"pool file {path} has no pools",
            "write a mapping of pool names to {tickers: [...]}",
        )
    pools: dict[str, Pool] = {}
    for name, entry in raw.items():
        if isinstance(entry, list):
            entry = {"tickers": entry}
        if not isinstance(entry, dict) or "tickers" not in entry:
            raise PoolError(
                f"pool {name!r} in {path} has no 'tickers' list",
                "give each pool a tickers: [...] entry",
            )
        parent = entry.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise PoolError(
                f"pool {name!r} in {path}: parent must be one pool name, "
                f"got {parent!r}",
                "write parent: sp20",
            )
        unknown = set(entry) - {"tickers", "parent", "description"}
        if unknown:
            raise PoolError(
                f"unknown key(s) {', '.join(sorted(unknown))} in pool {name!r} "
                f"of {path}",
                "allowed keys are tickers, parent and description",
            )
        tickers = entry["tickers"]
        if not isinstance(tickers, list) or not all(
            isinstance(t, str) and t.strip() for t in tickers
        ):
            raise PoolError(
                f"pool {name!r} in {path}: tickers must be a list of names",
                "write tickers: [AAPL, MSFT]",
            )
        pools[str(name)] = make_pool(
            str(name),
            tickers,
            parent=entry.get("parent"),
            description=str(entry.get("description", "")),
            origin=str(path),
        )
    _check_parents(pools, path)
    return pools


def _check_parents(pools: dict[str, Pool], path: Path) -> None:
    shipped = None
    for pool in pools.values():
        if pool.parent is None:
            continue
        if pool.parent not in pools:
            shipped = shipped if shipped is not None else shipped_pools()
            if pool.parent not in shipped:
                raise PoolError(
                    f"pool {pool.name!r} in {path} names an unknown parent "
                    f"{pool.parent!r}",
                    "define the parent in the same file or use a shipped pool",
                )
            parent_tickers = shipped[pool.parent].tickers
        else:
            parent_tickers = pools[pool.parent].tickers
        if pool.parent == pool.name:
            raise PoolError(
                f"pool {pool.name!r} in {path} is its own parent", "remove the parent"
            )
        seen = {pool.name}
        step = pools.get(pool.parent)
        while step is not None and step.parent is not None:
            if step.name in seen:
                raise PoolError(
                    f"pools in {path} form a parent cycle through {step.name!r}",
                    "give the global pool no parent",
                )
            seen.add(step.name)
            step = pools.get(step.parent)
        outside = set(pool.tickers) - set(parent_tickers)
        if outside:
            raise PoolError(
                f"pool {pool.name!r} has ticker(s) {', '.join(sorted(outside))} "
                f"outside its parent {pool.parent!r}",
                "a customizable pool must be a subset of its global pool",
            )


def make_pool(
    name: str,
    tickers: Sequence[str],
    *,
    parent: str | None = None,
    description: str = "",
    origin: str = "",
) -> Pool:
    """Build a pool, stripping names and rejecting empty or repeated tickers."""
    cleaned = [t.strip().upper() if t.strip().isalpha() else t.strip() for t in tickers]
    cleaned = [t for t in cleaned if t]
    if not cleaned:
        raise PoolError(f"pool {name!r} is empty", "name at least one ticker")
    repeated = sorted({t for t in cleaned if cleaned.count(t) > 1})
    if repeated:
        raise PoolError(
            f"pool {name!r} lists {', '.join(repeated)} more than once",
            "list each ticker once",
        )
    return Pool(name, tuple(cleaned), parent, description, origin)


def shipped_pools() -> dict[str, Pool]:
    """Return every pool shipped with finrl_lab, by name."""
    pools: dict[str, Pool] = {}
    for path in _shipped_pool_files():
        pools.update(read_pool_file(path))
    return pools


def resolve_pool(spec: str | Sequence[str] | Pool) -> Pool:
    """Turn a pool name, ``FILE.yaml[:NAME]``, ``A,B,C`` or a ticker list into a pool.

    :raises PoolError: the name is unknown, the file is invalid or the pool is empty.
    """
    if isinstance(spec, Pool):
        return spec
    if not isinstance(spec, str):
        return make_pool("custom", list(spec))
    text = spec.strip()
    if not text:
        raise PoolError("pool is empty", "name a pool or list tickers like AAPL,MSFT")
    file_part, _, name_part = text.partition(":")
    if file_part.endswith((".yaml", ".yml")):
        path = Path(file_part).expanduser()
        if not path.exists():
            raise PoolError(f"pool file {file_part!r} does not exist", "check the path")
        pools = read_pool_file(path)
        if name_part:
            if name_part not in pools:
                raise PoolError(
                    f"pool {name_part!r} not in {path}",
                    f"the file defines: {', '.join(pools)}",
                )
            return pools[name_part]
        if len(pools) > 1:
            raise PoolError(
                f"{path} defines several pools ({', '.join(pools)})",
                f"pick one with {file_part}:NAME",
            )
        return next(iter(pools.values()))
    shipped = shipped_pools()
    if text in shipped:
        return shipped[text]
    if "," in text:
        return make_pool("custom", [t for t in text.split(",") if t.strip()])
    if text.isupper() and " " not in text:
        # A single upper-case word that is not a pool name is read as one ticker.
        return make_pool("custom", [text])
    raise PoolError(
        f"unknown pool {text!r}",
        f"use one of {', '.join(shipped)}, a YAML file, or tickers like AAPL,MSFT",
    )
