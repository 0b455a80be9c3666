"""ccxt source on real recorded 1-minute candles, served page by page."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finrl_lab.cli import main
from finrl_lab.data import ccxt_source
from finrl_lab.data.cache import Cache, EntryKey
from finrl_lab.data.ccxt_source import CcxtSource
from finrl_lab.data.sources import SourceUnavailableError, load_cached, update_cache
from finrl_lab.errors import DataError

CANDLES_PATH = (
    Path(__file__).resolve().parents[2]
    / "shared/data/crypto/freqtrade_testdata/UNITTEST_BTC-1m.json.gz"
)
pytestmark = pytest.mark.skipif(
    not CANDLES_PATH.is_file(), reason="shared crypto candles absent"
)
LATER = pd.Timestamp("2020-01-01", tz="UTC")
MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def candles() -> list[list[float]]:
    with gzip.open(CANDLES_PATH, "rt") as handle:
        return json.load(handle)


class RecordedExchange:
    """A real ccxt binance object whose network calls serve recorded candles.

    Each page starts ``overlap`` candles before ``since`` (as some exchanges do),
    so page borders repeat candles. Calls whose index is in ``fail_at`` raise
    ``error`` instead.
    """

    def __init__(self, candles, *, page=500, overlap=2, fail_at=(), error=None):
        import ccxt

        self.exchange = ccxt.binance({"enableRateLimit": True})
        self.candles = candles
        self.times = np.array([c[0] for c in candles], dtype=np.int64)
        self.page = page
        self.overlap = overlap
        self.fail_at = set(fail_at)
        self.error = error or ccxt.NetworkError("connection reset by peer")
        self.since_calls: list[int] = []
        self.exchange.load_markets = self.load_markets
        self.exchange.fetch_ohlcv = self.fetch_ohlcv

    def load_markets(self, reload=False, params=None):  # noqa: ANN001
        self.exchange.markets = {"BTC/USDT": {"symbol": "BTC/USDT"}}
        return self.exchange.markets

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):  # noqa: ANN001
        call = len(self.since_calls)
        self.since_calls.append(since)
        if call in self.fail_at:
            raise self.error
        first = int(np.searchsorted(self.times, since))
        first = max(first - self.overlap, 0)
        size = min(limit or self.page, self.page)
        return [list(c) for c in self.candles[first : first + size]]


def make_source(recorded, sleeps=None):
    return CcxtSource(
        recorded.exchange,
        page_limit=500,
        retries=3,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        clock=lambda: LATER,
    )


def cached_frame(cache):
    frame, _ = cache.read(EntryKey("ccxt/binance", "1m", "BTC/USDT"))
    return frame


def expected_frame(candles):
    frame = pd.DataFrame(
        candles, columns=["ms", "open", "high", "low", "close", "volume"]
    )
    frame["date"] = pd.to_datetime(frame["ms"], unit="ms", utc=True)
    return frame


def assert_same_candles(frame, candles):
    expected = expected_frame(candles)
    assert not frame["date"].duplicated().any()
    assert len(frame) == len(expected)
    np.testing.assert_array_equal(frame["date"].to_numpy(), expected["date"].to_numpy())
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(frame[name].to_numpy(), expected[name].to_numpy())


def test_pages_with_overlaps_give_every_candle_once(candles, tmp_path):
    recorded = RecordedExchange(candles)
    cache = Cache(tmp_path)
    update_cache(
        make_source(recorded),
        ["BTC/USDT"],
        "1m",
        start="2017-11-04",
        end="2017-11-14",
        cache=cache,
    )
    assert_same_candles(cached_frame(cache), candles)
    since = recorded.since_calls
    assert since == sorted(since)
    assert len(since) >= len(candles) // 500


def test_missing_candle_filled_and_flagged(candles, tmp_path):
    cache = Cache(tmp_path)
    update_cache(
        make_source(RecordedExchange(candles)),
        ["BTC/USDT"],
        "1m",
        start="2017-11-04",
        end="2017-11-14",
        cache=cache,
    )
    panel, filled = load_cached("ccxt/binance", ["BTC/USDT"], "1m", cache=cache)
    times = np.array([c[0] for c in candles])
    span_minutes = (times[-1] - times[0]) // MINUTE_MS + 1
    assert len(panel) == span_minutes
    assert filled.sum() == span_minutes - len(candles)
    gap = int(np.flatnonzero(np.diff(times) > MINUTE_MS)[0])
    missing_time = pd.Timestamp(times[gap] + MINUTE_MS, unit="ms", tz="UTC")
    row = panel.timestamps.get_loc(missing_time)
    assert filled[row, 0]
    assert panel.available[row, 0]
    assert panel.close[row, 0] == candles[gap][4]
    assert panel.field("volume")[row, 0] == 0.0
    assert panel.field("open")[row, 0] == candles[gap][4]
    assert not filled[row - 1, 0]


def test_network_error_retried_in_place(candles, tmp_path):
    import ccxt

    sleeps: list[float] = []
    recorded = RecordedExchange(
        candles, fail_at={4, 5}, error=ccxt.RequestTimeout("timed out")
    )
    cache = Cache(tmp_path)
    update_cache(
        make_source(recorded, sleeps),
        ["BTC/USDT"],
        "1m",
        start="2017-11-04",
        end="2017-11-14",
        cache=cache,
    )
    assert_same_candles(cached_frame(cache), candles)
    assert sleeps == [1.0, 2.0]
    assert recorded.since_calls[4] == recorded.since_calls[5] == recorded.since_calls[6]


def test_failed_download_resumes_without_loss(candles, tmp_path):
    cache = Cache(tmp_path)
    broken = RecordedExchange(candles, fail_at=set(range(6, 100)))
    with pytest.raises(SourceUnavailableError, match="after 3 retries"):
        update_cache(
            make_source(broken),
            ["BTC/USDT"],
            "1m",
            start="2017-11-04",
            end="2017-11-14",
            cache=cache,
        )
    partial = cached_frame(cache)
    assert 0 < len(partial) < len(candles)
    assert_same_candles(partial, candles[: len(partial)])
    working = RecordedExchange(candles)
    result = update_cache(
        make_source(working), ["BTC/USDT"], "1m", end="2017-11-14", cache=cache
    )
    assert result[0].mode == "incremental"
    last_saved = int(partial["date"].iloc[-1].value // 1_000_000)
    assert working.since_calls[0] == last_saved + MINUTE_MS
    assert_same_candles(cached_frame(cache), candles)


def test_update_resumes_from_last_bar(candles, tmp_path):
    cache = Cache(tmp_path)
    update_cache(
        make_source(RecordedExchange(candles)),
        ["BTC/USDT"],
        "1m",
        start="2017-11-04",
        end="2017-11-08",
        cache=cache,
    )
    first_part = cached_frame(cache)
    later = RecordedExchange(candles)
    update_cache(make_source(later), ["BTC/USDT"], "1m", end="2017-11-14", cache=cache)
    last_ms = int(first_part["date"].iloc[-1].value // 1_000_000)
    assert later.since_calls[0] == last_ms + MINUTE_MS
    assert_same_candles(cached_frame(cache), candles)


def test_unfinished_candle_not_stored(candles, tmp_path):
    cache = Cache(tmp_path)
    last = pd.Timestamp(candles[-1][0], unit="ms", tz="UTC")
    source = make_source(RecordedExchange(candles))
    source.clock = lambda: last + pd.Timedelta(seconds=30)
    update_cache(source, ["BTC/USDT"], "1m", start="2017-11-04", cache=cache)
    assert_same_candles(cached_frame(cache), candles[:-1])


def test_empty_result_rejected(candles, tmp_path):
    with pytest.raises(DataError, match="no bars for BTC/USDT"):
        update_cache(
            make_source(RecordedExchange(candles)),
            ["BTC/USDT"],
            "1m",
            start="2019-01-01",
            end="2019-01-02",
            cache=Cache(tmp_path),
        )


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def patch_exchange(monkeypatch, recorded):
    monkeypatch.setattr(ccxt_source, "make_exchange", lambda name: recorded.exchange)
    monkeypatch.setattr(ccxt_source.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(CcxtSource, "now", lambda self: LATER)


def test_cli_download_and_read_as_data(candles, tmp_path, monkeypatch, capsys):
    patch_exchange(monkeypatch, RecordedExchange(candles))
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "ccxt",
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1m",
            "--since",
            "2017-11-04",
            "--until",
            "2017-11-14",
            "--cache-dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0, err
    assert "13681" in out
    from finrl_lab.data.local import resolve_data

    panel = resolve_data("cache:ccxt/binance/1m/BTC/USDT", cache_dir=tmp_path)
    assert panel.market == "crypto"
    assert panel.interval == "1m"
    assert panel.tickers == ("BTC/USDT",)
    code, out, err = run_cli(
        ["data", "info", "cache:ccxt/binance/1m", "--cache-dir", str(tmp_path)], capsys
    )
    assert code == 0, err
    assert "717" in out  # filled candles


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--exchange", "binanse", "--symbol", "BTC/USDT"],
            "unknown ccxt exchange 'binanse'; did you mean binance",
        ),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDX"],
            "unknown symbol 'BTC/USDX' on binance",
        ),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "7m"],
            "binance has no '7m' timeframe",
        ),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDT", "--until", "2018-01-02"],
            "no bars for BTC/USDT",
        ),
    ],
)
def test_cli_bad_input_exits_2(candles, tmp_path, monkeypatch, capsys, argv, expected):
    recorded = RecordedExchange(candles)
    if "binanse" not in argv:
        patch_exchange(monkeypatch, recorded)
    since = "2018-01-01" if "--until" in argv else "2017-11-04"
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "ccxt",
            "--since",
            since,
            *argv,
            "--cache-dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert expected in err


def test_cli_rate_limit_outlasting_retries_exits_2(
    candles, tmp_path, monkeypatch, capsys
):
    import ccxt

    recorded = RecordedExchange(
        candles,
        fail_at=set(range(100)),
        error=ccxt.RateLimitExceeded("429 Too Many Requests"),
    )
    patch_exchange(monkeypatch, recorded)
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "ccxt",
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1m",
            "--since",
            "2017-11-04",
            "--retries",
            "2",
            "--cache-dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "rate limit" in err
    assert len(recorded.since_calls) == 3


def test_earlier_start_backfills(candles, tmp_path):
    cache = Cache(tmp_path)
    update_cache(
        make_source(RecordedExchange(candles)),
        ["BTC/USDT"],
        "1m",
        start="2017-11-08",
        end="2017-11-14",
        cache=cache,
    )
    later_part = cached_frame(cache)
    result = update_cache(
        make_source(RecordedExchange(candles)),
        ["BTC/USDT"],
        "1m",
        start="2017-11-04",
        end="2017-11-14",
        cache=cache,
    )
    assert result[0].mode == "backfill"
    assert result[0].new_rows == len(candles) - len(later_part)
    assert_same_candles(cached_frame(cache), candles)
