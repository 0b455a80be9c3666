"""Stock pools: shipped pools, user YAML files, ticker lists and their errors."""

from __future__ import annotations

import pytest
from helpers import DJ30_DIR

from finrl_lab.data.pools import read_pool_file, resolve_pool, shipped_pools
from finrl_lab.errors import PoolError


def test_shipped_pools_match_the_earnmore_lists():
    pools = shipped_pools()
    assert len(pools["sp20"].tickers) == 20
    assert len(pools["dj30"].tickers) == 28
    assert "V" not in pools["dj30"].tickers
    assert pools["dj30-financial"].tickers == (
        "AXP",
        "GS",
        "JPM",
        "JNJ",
        "MRK",
        "TRV",
        "UNH",
    )
    for name in (
        "sp20-tech",
        "sp20-health",
        "sp20-energy",
        "sp20-staples",
        "sp20-financial",
    ):
        assert set(pools[name].tickers) <= set(pools["sp20"].tickers)
    for name in ("dj30-tech", "dj30-financial", "dj30-industrial"):
        assert pools[name].parent == "dj30"
        assert set(pools[name].tickers) <= set(pools["dj30"].tickers)


@pytest.mark.skipif(not DJ30_DIR.exists(), reason="real Dow Jones files not present")
def test_dj30_pool_is_the_earnmore_stock_list():
    listed = (DJ30_DIR / "stocks.txt").read_text().split()
    assert shipped_pools()["dj30"].tickers == tuple(listed)


def test_comma_list_and_single_ticker():
    assert resolve_pool("aapl, MSFT,KO").tickers == ("AAPL", "MSFT", "KO")
    assert resolve_pool("XOM").tickers == ("XOM",)


def test_user_yaml_pool(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("banks:\n  parent: sp20\n  tickers: [BAC, JPM]\n")
    pool = resolve_pool(str(path))
    assert pool.name == "banks"
    assert pool.tickers == ("BAC", "JPM")


def test_yaml_with_several_pools_needs_a_name(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("a: [AAPL]\nb: [MSFT, KO]\n")
    with pytest.raises(PoolError, match="several pools"):
        resolve_pool(str(path))
    assert resolve_pool(f"{path}:b").tickers == ("MSFT", "KO")


def test_subset_outside_parent_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("g: [A, B]\nc:\n  parent: g\n  tickers: [A, Z]\n")
    with pytest.raises(PoolError, match="Z outside its parent"):
        read_pool_file(path)


def test_unknown_pool_lists_the_choices():
    with pytest.raises(PoolError) as info:
        resolve_pool("nasdaq100")
    assert "unknown pool 'nasdaq100'" in str(info.value)
    assert "dj30-tech" in str(info.value)


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_empty_pool_is_rejected(spec):
    with pytest.raises(PoolError, match="empty"):
        resolve_pool(spec)


def test_repeated_ticker_is_rejected():
    with pytest.raises(PoolError, match="more than once"):
        resolve_pool("AAPL,MSFT,AAPL")


def test_broken_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [AAPL\n")
    with pytest.raises(PoolError) as info:
        resolve_pool(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:\n  parent: nosuch\n  tickers: [AAPL]\n", "unknown parent 'nosuch'"),
        ("a:\n  parent: a\n  tickers: [AAPL]\n", "its own parent"),
        ("a:\n  parent: b\n  tickers: [X]\nb:\n  parent: a\n  tickers: [X]\n", "cycle"),
        ("a: [AAPL]\na: [MSFT]\n", "more than once"),
        ("a:\n  parent: [sp20]\n  tickers: [AAPL]\n", "parent must be one pool name"),
    ],
)
def test_invalid_pool_files(tmp_path, text, expected):
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(PoolError) as info:
        read_pool_file(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_pool_file_has_a_hint(tmp_path):
    with pytest.raises(PoolError, match="does not exist; check the path"):
        read_pool_file(tmp_path / "nosuch.yaml")
