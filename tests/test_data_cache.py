"""Cache folder, atomic writes, corrupt files, references and cleaning rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finrl_lab.cli import main
from finrl_lab.data import cache as cache_module
from finrl_lab.data.cache import (
    CACHE_ENV_VAR,
    Cache,
    CorruptCacheError,
    EntryKey,
    cache_dir,
    symbol_filename,
)
from finrl_lab.data.cleaning import clean_bars, fill_grid, long_to_panel
from finrl_lab.data.local import resolve_data
from finrl_lab.data.sources import load_cached, parse_cache_reference
from finrl_lab.errors import DataError

KEY = EntryKey("yahoo", "1d", "AAPL")


def bars(dates, closes=None):
    dates = pd.DatetimeIndex(pd.to_datetime(dates, utc=True))
    closes = np.arange(1.0, len(dates) + 1) if closes is None else closes
    return pd.DataFrame(
        {
            "date": dates,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": np.ones(len(dates)),
        }
    )


def write_entry(cache, key=KEY, frame=None):
    frame = bars(["2020-01-02", "2020-01-03", "2020-01-06"]) if frame is None else frame
    meta = {
        "market": "equity",
        "coverage_start": "2020-01-01",
        "coverage_end": "2020-01-06",
    }
    return cache.write(key, frame, meta)


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache_dir(tmp_path / "option") == tmp_path / "option"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert cache_dir().name == "finrl-lab"


def test_entry_paths(tmp_path):
    cache = Cache(tmp_path)
    assert symbol_filename("BTC/USDT:USDT") == "BTC-USDT_USDT"
    assert cache.path(EntryKey("ccxt/binance", "1m", "BTC/USDT")) == (
        tmp_path / "ccxt" / "binance" / "1m" / "BTC-USDT.parquet"
    )
    assert cache.path(KEY) == tmp_path / "yahoo" / "1d" / "AAPL.parquet"


def test_failed_write_keeps_previous_entry(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    write_entry(cache)

    def broken_write(table, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_entry(cache, frame=bars(["2021-01-04"]))
    frame, meta = cache.read(KEY)
    assert len(frame) == 3
    assert meta["rows"] == 3
    assert [p.name for p in cache.path(KEY).parent.iterdir()] == ["AAPL.parquet"]


@pytest.mark.parametrize(
    "damage", ["truncate", "garbage", "rows", "unsorted", "no metadata"]
)
def test_corrupt_files_rejected(tmp_path, damage):
    cache = Cache(tmp_path)
    path = write_entry(cache)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    else:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"finrl_lab"])
        if damage == "rows":
            meta["rows"] = 5
        if damage == "unsorted":
            table = pa.Table.from_pandas(
                table.to_pandas().iloc[::-1], preserve_index=False
            )
        schema_meta = (
            {} if damage == "no metadata" else {b"finrl_lab": json.dumps(meta).encode()}
        )
        pq.write_table(table.replace_schema_metadata(schema_meta), path)
    with pytest.raises(CorruptCacheError, match="is corrupt"):
        cache.read(KEY)


def test_references_parse():
    ref = parse_cache_reference("cache:yahoo/1d/dj30")
    assert (ref.source, ref.interval, ref.selection) == ("yahoo", "1d", "dj30")
    ref = parse_cache_reference("cache:ccxt/Binance/1m/BTC/USDT,ETH/USDT:USDT")
    assert (ref.source, ref.interval) == ("ccxt/binance", "1m")
    assert ref.selection == "BTC/USDT,ETH/USDT:USDT"
    assert parse_cache_reference("cache:yahoo/1h").selection is None
    for bad in ("cache:stooq/1d/AAPL", "cache:ccxt/1m", "cache:yahoo/daily/AAPL"):
        with pytest.raises(DataError):
            parse_cache_reference(bad)


def test_resolve_data_reads_cache(tmp_path):
    cache = Cache(tmp_path)
    write_entry(cache)
    write_entry(
        cache, EntryKey("yahoo", "1d", "MSFT"), bars(["2020-01-03", "2020-01-06"])
    )
    panel = resolve_data("cache:yahoo/1d/AAPL,MSFT", cache_dir=tmp_path)
    assert panel.tickers == ("AAPL", "MSFT")
    assert panel.available.tolist() == [[True, False], [True, True], [True, True]]
    everything = resolve_data("cache:yahoo/1d", cache_dir=tmp_path)
    assert set(everything.tickers) == {"AAPL", "MSFT"}
    with pytest.raises(DataError, match="not in the cache"):
        resolve_data("cache:yahoo/1d/AAPL,IBM", cache_dir=tmp_path)


def test_clean_bars_rules():
    raw = bars(
        ["2020-01-03", "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"],
        np.array([1.0, 2.0, 3.0, np.nan, -1.0]),
    )
    raw.loc[1, "open"] = 0.0
    cleaned = clean_bars(raw, where="test")
    assert cleaned["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2020-01-02",
        "2020-01-03",
    ]
    assert cleaned["close"].tolist() == [2.0, 3.0]  # the later duplicate wins
    assert np.isnan(cleaned["open"].iloc[0])  # a zero open is a missing quote


def test_fill_grid_rules():
    frame = bars(
        ["2020-01-01 00:00", "2020-01-01 00:01", "2020-01-01 00:04"],
        np.array([10.0, 11.0, 12.0]),
    )
    filled = fill_grid(frame, "1m", where="test")
    assert filled["filled"].tolist() == [False, False, True, True, False]
    assert filled["close"].tolist() == [10.0, 11.0, 11.0, 11.0, 12.0]
    assert filled["volume"].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
    off_grid = bars(["2020-01-01 00:00:00", "2020-01-01 00:01:30"])
    with pytest.raises(DataError, match="off the 1m grid"):
        fill_grid(off_grid, "1m", where="test")


def test_crypto_panel_never_fills_before_listing():
    early = fill_grid(bars(["2020-01-01 00:00", "2020-01-01 00:03"]), "1m", where="a")
    late = fill_grid(bars(["2020-01-01 00:02", "2020-01-01 00:03"]), "1m", where="b")
    panel, filled = long_to_panel(
        {"EARLY": early, "LATE": late}, interval="1m", market="crypto", source="test"
    )
    assert panel.available[:, 1].tolist() == [False, False, True, True]
    assert np.isnan(panel.close[:2, 1]).all()
    assert filled[:, 0].tolist() == [False, True, True, False]


def test_info_on_local_file(tmp_path, capsys):
    path = tmp_path / "AAPL.csv"
    bars(["2020-01-02", "2020-01-03", "2020-01-07"]).to_csv(path, index=False)
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "AAPL" in out
    assert "2020-01-07" in out


def test_info_on_missing_entry_exits_2(tmp_path, capsys):
    code = main(["data", "info", "cache:yahoo/1d/AAPL", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "not in the cache" in err


def test_load_cached_date_window(tmp_path):
    cache = Cache(tmp_path)
    write_entry(cache)
    panel, filled = load_cached(
        "yahoo", ["AAPL"], "1d", cache=cache, start="2020-01-03", end="2020-01-06"
    )
    assert len(panel) == 2
    assert filled.shape == (2, 1)
