"""Yahoo source on real recorded chart responses, served in place of HTTP."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter

from finrl_lab.cli import main
from finrl_lab.data import yahoo
from finrl_lab.data.cache import Cache, EntryKey
from finrl_lab.data.sources import get_panel, load_cached, update_cache
from finrl_lab.data.yahoo import YahooSource, normalise_history
from finrl_lab.errors import DataError

FIXTURES = Path(__file__).resolve().parents[2] / "shared/data/fixtures/yahoo_chart"
pytestmark = [
    pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared Yahoo fixtures absent"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]
LATER = pd.Timestamp("2025-02-21", tz="UTC")  # after every recording
MSFT = "historical-via-chart-MSFT-dividends-2021-02-01-to-2022-01-31.csv.json"
NVDA = "historical-via-chart-NVDA-split-2021-02-01-to-2022-01-31.csv.json"
AAPL = "chart-AAPL-2020-08-31-to-2020-11-07.json"
TSLA = "historical-via-chart-dividends-TSLA-no-dividends.json.gz"


def load_chart(name: str) -> dict:
    path = FIXTURES / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return json.load(handle)["response"]["bodyJson"]


class ChartAdapter(BaseAdapter):
    """Serve yfinance's requests from recorded chart bodies; block everything else.

    Cookie and crumb requests get the responses Yahoo sends; a chart request for a
    symbol without a recording gets Yahoo's 404 body. Any other host raises, so a
    test fails instead of reaching the network.
    """

    def __init__(self, charts: dict[str, dict], status: int = 200) -> None:
        super().__init__()
        self.charts = charts
        self.status = status
        self.calls: list[str] = []

    def send(self, request, **kwargs):  # noqa: ANN001
        self.calls.append(request.url)
        url = urlparse(request.url)
        response = requests.Response()
        response.request = request
        response.url = request.url
        response.headers["content-type"] = "application/json"
        response.status_code, body = self._answer(url)
        response._content = body
        return response

    def _answer(self, url) -> tuple[int, bytes]:  # noqa: ANN001
        host = url.netloc
        if host == "fc.yahoo.com" or host.endswith("guce.yahoo.com"):
            return 404, b""
        if not host.endswith("finance.yahoo.com"):
            raise requests.exceptions.ConnectionError(f"blocked {url.geturl()}")
        if url.path.endswith("/getcrumb"):
            return 200, b"test-crumb"
        if "/v8/finance/chart/" in url.path:
            if self.status != 200:
                return self.status, b"Too Many Requests"
            symbol = url.path.rsplit("/", 1)[1]
            if symbol in self.charts:
                return 200, json.dumps(self.charts[symbol]).encode()
            error = {"code": "Not Found", "description": "No data found"}
            return 404, json.dumps({"chart": {"result": None, "error": error}}).encode()
        error = {"code": "Not Found", "description": "Quote not found"}
        body = {"quoteSummary": {"result": None, "error": error}}
        return 404, json.dumps(body).encode()

    def close(self) -> None:
        pass


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """Return a function that builds a session serving the given chart bodies."""
    import yfinance as yf
    from yfinance.data import YfData

    yf.set_tz_cache_location(str(tmp_path / "yfinance"))
    YfData.cache_get.cache_clear()
    monkeypatch.setattr(yahoo.time, "sleep", lambda seconds: None)

    def make(charts: dict[str, dict], status: int = 200):
        session = requests.Session()
        adapter = ChartAdapter(charts, status)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        YfData.cache_get.cache_clear()
        return session, adapter

    yield make
    YfData.cache_get.cache_clear()


def raw_arrays(body: dict) -> dict[str, np.ndarray]:
    result = body["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    out = {k: np.array(quote[k], dtype=float) for k in ("open", "high", "low", "close")}
    out["adjclose"] = np.array(result["indicators"]["adjclose"][0]["adjclose"], float)
    out["time"] = pd.to_datetime(result["timestamp"], unit="s", utc=True)
    return out


def fetch_panel(session, symbol, start, end, tmp_path, clock=LATER):
    source = YahooSource(session=session, clock=lambda: clock)
    return get_panel(
        source, [symbol], "1d", start=start, end=end, cache=Cache(tmp_path / "c")
    )


def test_dividends_adjust_all_prices(serve, tmp_path):
    body = load_chart(MSFT)
    session, _ = serve({"MSFT": body})
    panel = fetch_panel(session, "MSFT", "2021-02-01", "2022-01-31", tmp_path)
    raw = raw_arrays(body)
    assert len(panel) == len(raw["close"]) == 252
    # Back-adjust the raw closes for each dividend in the window, from the events.
    expected = raw["close"].copy()
    dividends = body["chart"]["result"][0]["events"]["dividends"].values()
    for event in dividends:
        ex_date = pd.Timestamp(event["date"], unit="s", tz="UTC")
        i = int(np.searchsorted(raw["time"], ex_date))
        expected[:i] *= 1 - event["amount"] / raw["close"][i - 1]
    close = panel.field("close")[:, 0]
    np.testing.assert_allclose(close / close[-1], expected / expected[-1], atol=1e-5)
    # Open, high and low get the same factor as close.
    factor = raw["adjclose"] / raw["close"]
    for name in ("open", "high", "low"):
        np.testing.assert_allclose(panel.field(name)[:, 0], raw[name] * factor)


def test_split_window_has_no_jump(serve, tmp_path):
    body = load_chart(NVDA)
    session, _ = serve({"NVDA": body})
    panel = fetch_panel(session, "NVDA", "2021-02-01", "2022-01-31", tmp_path)
    raw = raw_arrays(body)
    factor = raw["adjclose"] / raw["close"]
    for name in ("open", "high", "low", "close"):
        np.testing.assert_allclose(panel.field(name)[:, 0], raw[name] * factor)
    log_returns = np.abs(np.diff(np.log(panel.close[:, 0])))
    assert log_returns.max() < np.log(1.5)
    frame, _ = Cache(tmp_path / "c").read(EntryKey("yahoo", "1d", "NVDA"))
    split_rows = frame.loc[frame["splits"] > 0]
    assert list(split_rows["splits"]) == [4.0]
    assert str(split_rows["date"].iloc[0].date()) == "2021-07-20"


def test_split_and_dividend_in_one_window(serve, tmp_path):
    body = load_chart(AAPL)
    session, _ = serve({"AAPL": body})
    panel = fetch_panel(session, "AAPL", "2020-08-31", "2020-11-07", tmp_path)
    raw = raw_arrays(body)
    close = panel.close[:, 0]
    assert len(close) == len(raw["close"])
    # The 0.205 dividend goes ex on the last bar; bars before it scale alike.
    ratio_before = close[-2] / raw["close"][-2]
    ratio_last = close[-1] / raw["close"][-1]
    assert ratio_before / ratio_last == pytest.approx(
        1 - 0.205 / raw["close"][-2], 1e-5
    )
    assert abs(np.log(close[1] / close[0])) < np.log(1.5)


def test_full_history_keeps_every_bar(serve, tmp_path):
    body = load_chart(TSLA)
    session, _ = serve({"TSLA": body})
    panel = fetch_panel(session, "TSLA", "1990-01-01", "2023-08-11", tmp_path)
    raw = raw_arrays(body)
    assert len(panel) == len(raw["close"]) == 3303
    assert str(panel.timestamps[0].date()) == "2010-06-29"
    assert panel.available.all()
    for name in ("open", "high", "low", "close"):
        assert np.isfinite(panel.field(name)).all()
    # No dividends: adjusted prices are Yahoo's split-adjusted ones.
    np.testing.assert_allclose(panel.close[:, 0], raw["close"])
    assert np.abs(np.diff(np.log(panel.close[:, 0]))).max() < np.log(1.5)


def test_unfinished_and_empty_bars_dropped(serve, tmp_path):
    body = copy.deepcopy(load_chart(MSFT))
    result = body["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    adjusted = result["indicators"]["adjclose"][0]["adjclose"]
    # Yahoo's placeholder of nulls on a Sunday, then a live bar of a session
    # that is still open at the time of the request.
    sunday = pd.Timestamp("2022-01-30 14:30", tz="UTC")
    live = pd.Timestamp("2022-02-01 14:30", tz="UTC")
    for stamp, value in ((sunday, None), (live, 310.0)):
        result["timestamp"].append(int(stamp.timestamp()))
        for key in quote:
            quote[key].append(value)
        adjusted.append(value)
    session_end = live + pd.Timedelta(hours=6, minutes=30)
    result["meta"]["currentTradingPeriod"]["regular"].update(
        start=int(live.timestamp()), end=int(session_end.timestamp())
    )
    session, _ = serve({"MSFT": body})
    during_session = live + pd.Timedelta(hours=3)
    panel = fetch_panel(
        session, "MSFT", "2021-02-01", "2022-02-01", tmp_path, clock=during_session
    )
    assert len(panel) == 252
    assert str(panel.timestamps[-1].date()) == "2022-01-28"
    assert np.isfinite(panel.close).all()


def test_column_layouts_give_same_bars(serve):
    import yfinance as yf

    session, _ = serve({"MSFT": load_chart(MSFT)})
    frame = yf.Ticker("MSFT", session=session).history(
        start="2021-02-01", end="2022-02-01", auto_adjust=False, actions=True
    )
    expected = normalise_history(frame, "MSFT", "1d")
    price_first = frame.copy()
    price_first.columns = pd.MultiIndex.from_product([frame.columns, ["MSFT"]])
    ticker_first = frame.copy()
    ticker_first.columns = pd.MultiIndex.from_product([["MSFT"], frame.columns])
    as_column = frame.reset_index()
    renamed = frame.rename(columns={"Stock Splits": "Splits"})
    naive = frame.tz_localize(None)
    for variant in (price_first, ticker_first, as_column, renamed, naive):
        got = normalise_history(variant, "MSFT", "1d")
        pd.testing.assert_frame_equal(got, expected)
    without_adjusted = normalise_history(frame.drop(columns="Adj Close"), "MSFT", "1d")
    np.testing.assert_array_equal(without_adjusted["adj_close"], expected["close"])


def test_update_fetches_only_new_bars(serve, tmp_path):
    body = load_chart(MSFT)
    session, adapter = serve({"MSFT": body})
    cache = Cache(tmp_path / "c")
    source = YahooSource(session=session, clock=lambda: LATER)
    first = update_cache(
        source, ["MSFT"], "1d", start="2021-02-01", end="2021-06-30", cache=cache
    )
    assert first[0].mode == "full"
    second = update_cache(source, ["MSFT"], "1d", end="2022-01-31", cache=cache)
    assert second[0].mode == "incremental"
    assert second[0].new_rows == 252 - first[0].total_rows
    panel, _ = load_cached("yahoo", ["MSFT"], "1d", cache=cache)
    assert len(panel) == 252
    _, meta = cache.read(EntryKey("yahoo", "1d", "MSFT"))
    assert [f["mode"] for f in meta["fetches"]] == ["full", "incremental"]
    assert meta["fetches"][0]["library"].startswith("yfinance ")
    assert "v8/finance/chart/MSFT" in meta["fetches"][0]["endpoint"]
    third = update_cache(source, ["MSFT"], "1d", end="2022-01-31", cache=cache)
    assert third[0].mode == "up to date"


def test_changed_adjustment_refetches_history(serve, tmp_path):
    body = load_chart(MSFT)
    session, _ = serve({"MSFT": body})
    cache = Cache(tmp_path / "c")
    source = YahooSource(session=session, clock=lambda: LATER)
    update_cache(
        source, ["MSFT"], "1d", start="2021-02-01", end="2021-06-30", cache=cache
    )
    # A later dividend lowers every earlier adjusted close.
    changed = copy.deepcopy(body)
    adjusted = changed["chart"]["result"][0]["indicators"]["adjclose"][0]["adjclose"]
    changed["chart"]["result"][0]["indicators"]["adjclose"][0]["adjclose"] = [
        a * 0.99 for a in adjusted
    ]
    session2, _ = serve({"MSFT": changed})
    source2 = YahooSource(session=session2, clock=lambda: LATER)
    result = update_cache(source2, ["MSFT"], "1d", end="2022-01-31", cache=cache)
    assert result[0].mode == "full"
    frame, _ = cache.read(EntryKey("yahoo", "1d", "MSFT"))
    np.testing.assert_allclose(frame["adj_close"], np.array(adjusted) * 0.99)


def test_corrupt_cache_refetched(serve, tmp_path, caplog):
    session, _ = serve({"MSFT": load_chart(MSFT)})
    cache = Cache(tmp_path / "c")
    source = YahooSource(session=session, clock=lambda: LATER)
    update_cache(
        source, ["MSFT"], "1d", start="2021-02-01", end="2022-01-31", cache=cache
    )
    path = cache.path(EntryKey("yahoo", "1d", "MSFT"))
    data = bytearray(path.read_bytes())
    data[200:260] = b"\x00" * 60
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        load_cached("yahoo", ["MSFT"], "1d", cache=cache)
    result = update_cache(
        source, ["MSFT"], "1d", start="2021-02-01", end="2022-01-31", cache=cache
    )
    assert result[0].mode == "full"
    assert "corrupt" in caplog.text
    panel, _ = load_cached("yahoo", ["MSFT"], "1d", cache=cache)
    assert len(panel) == 252


def test_empty_range_rejected(serve, tmp_path):
    session, _ = serve({"MSFT": load_chart(MSFT)})
    source = YahooSource(session=session, clock=lambda: LATER)
    with pytest.raises(DataError, match="no bars for MSFT"):
        update_cache(
            source,
            ["MSFT"],
            "1d",
            start="2019-01-01",
            end="2019-12-31",
            cache=Cache(tmp_path / "c"),
        )
    assert not list((tmp_path / "c").rglob("*.parquet"))


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_download_then_info(serve, tmp_path, monkeypatch, capsys):
    session, _ = serve({"MSFT": load_chart(MSFT), "NVDA": load_chart(NVDA)})
    monkeypatch.setattr(yahoo, "make_session", lambda: session)
    monkeypatch.setattr(YahooSource, "now", lambda self: LATER)
    cache_dir = str(tmp_path / "c")
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "yahoo",
            "--pool",
            "MSFT,NVDA",
            "--start",
            "2021-02-01",
            "--end",
            "2022-01-31",
            "--cache-dir",
            cache_dir,
        ],
        capsys,
    )
    assert code == 0, err
    assert "MSFT" in out
    assert "NVDA" in out
    code, out, err = run_cli(
        ["data", "info", "cache:yahoo/1d/MSFT,NVDA", "--cache-dir", cache_dir], capsys
    )
    assert code == 0, err
    assert "2021-02-01" in out
    assert "yfinance" in out


def test_cli_unknown_ticker_exits_2(serve, tmp_path, monkeypatch, capsys):
    session, _ = serve({})
    monkeypatch.setattr(yahoo, "make_session", lambda: session)
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "yahoo",
            "--pool",
            "NOSUCHTICKER",
            "--start",
            "2021-02-01",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "unknown Yahoo ticker 'NOSUCHTICKER'" in err


def test_cli_rate_limit_exits_2(serve, tmp_path, monkeypatch, capsys):
    session, adapter = serve({"MSFT": load_chart(MSFT)}, status=429)
    monkeypatch.setattr(yahoo, "make_session", lambda: session)
    code, out, err = run_cli(
        [
            "data",
            "download",
            "--source",
            "yahoo",
            "--pool",
            "MSFT",
            "--start",
            "2021-02-01",
            "--retries",
            "2",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "rate limit" in err
    assert "after 2 retries" in err
    assert all(urlparse(u).netloc.endswith("yahoo.com") for u in adapter.calls)


def test_cli_corrupt_cache_info_exits_2(tmp_path, capsys):
    path = tmp_path / "c" / "yahoo" / "1d" / "MSFT.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really parquet")
    code, out, err = run_cli(
        ["data", "info", "cache:yahoo/1d/MSFT", "--cache-dir", str(tmp_path / "c")],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "corrupt" in err


def test_intraday_dates_and_unfinished_bar():
    index = pd.date_range(
        "2024-03-08 09:30", periods=4, freq="5min", tz="America/New_York"
    )
    frame = pd.DataFrame(
        {
            "Open": 1.0,
            "High": 1.0,
            "Low": 1.0,
            "Close": [1.0, 2.0, np.nan, 3.0],
            "Volume": 10,
        },
        index=index.rename("Datetime"),
    )
    bars = normalise_history(frame, "SPY", "5m")
    assert bars["date"].dt.strftime("%H:%M").tolist() == ["14:30", "14:35", "14:45"]
    now = pd.Timestamp("2024-03-08 14:48", tz="UTC")
    finished = yahoo.drop_unfinished(bars, "5m", now)
    assert finished["close"].tolist() == [1.0, 2.0]
    source = YahooSource(session=object(), clock=lambda: now)
    chunks = source._chunks(
        "1m", pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-20", tz="UTC")
    )
    assert len(chunks) == 3
    assert all(hi - lo <= pd.Timedelta(days=7) for lo, hi in chunks)
    assert chunks[-1][1] == pd.Timestamp("2024-03-20", tz="UTC")
