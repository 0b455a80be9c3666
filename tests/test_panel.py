"""Panel construction, local loaders and the bad-input rules for prices and dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import DJ30_DIR, needs_dj30

from finrl_lab.data.local import load_bundled, load_panel
from finrl_lab.data.panel import Panel, periods_per_year
from finrl_lab.errors import DataError


def test_bundled_panel_shape_and_dates():
    panel = load_bundled()
    assert panel.values.shape == (8313, 20, 1)
    assert panel.tickers[:3] == ("AAPL", "AMD", "BAC")
    assert str(panel.timestamps[0].date()) == "1990-01-02"
    assert str(panel.timestamps[-1].date()) == "2022-12-28"
    assert panel.timestamps.tz is not None
    assert panel.available.all()


@needs_dj30
def test_dj30_folder_loads_as_it_is():
    panel = load_panel(DJ30_DIR)
    assert panel.n_assets == 29
    assert panel.fields == ("open", "high", "low", "close", "volume")
    raw = pd.read_csv(DJ30_DIR / "MSFT.csv.gz")
    last = raw.iloc[-1]
    row = panel.timestamps.get_loc(pd.Timestamp(last["Date"], tz="UTC"))
    col = panel.tickers.index("MSFT")
    factor = last["Adj Close"] / last["Close"]
    assert panel.close[row, col] == pytest.approx(last["Adj Close"])
    assert panel.field("open")[row, col] == pytest.approx(last["Open"] * factor)


@needs_dj30
def test_late_listing_is_masked_not_dropped():
    panel = load_panel(DJ30_DIR)
    col = panel.tickers.index("V")
    listing = pd.Timestamp("2008-03-19", tz="UTC")
    before = panel.timestamps < listing
    assert not panel.available[before, col].any()
    assert panel.available[~before, col].all()
    assert np.isnan(panel.close[before, col]).all()


def test_periods_per_year_by_bar_size():
    assert periods_per_year("1d", "equity") == 252
    assert periods_per_year("1d", "crypto") == 365
    assert periods_per_year("1h", "crypto") == 365 * 24
    assert periods_per_year("1m", "crypto") == 365 * 24 * 60
    assert periods_per_year("30m", "equity") == pytest.approx(252 * 13)


def _long_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": ["2021-01-04", "2021-01-05", "2021-01-06"] * 2,
            "ticker": ["A"] * 3 + ["B"] * 3,
            "close": [10.0, 11.0, 12.0, 20.0, 19.0, 21.0],
        }
    )


def test_missing_row_is_a_gap():
    frame = _long_frame().drop(index=4)
    panel = Panel.from_long(frame)
    assert panel.available.tolist() == [[True, True], [True, False], [True, True]]
    filled = panel.filled_close()
    assert filled[1, 1] == 20.0


@pytest.mark.parametrize(
    ("price", "word"), [(np.nan, "NaN"), (0.0, "zero"), (-3.0, "negative")]
)
def test_bad_close_is_rejected_with_ticker_and_date(price, word):
    frame = _long_frame()
    frame.loc[4, "close"] = price
    with pytest.raises(DataError) as info:
        Panel.from_long(frame, source="prices.csv")
    text = str(info.value)
    assert word in text
    assert "B on 2021-01-05" in text
    assert "prices.csv" in text


def test_duplicated_date_is_rejected():
    frame = pd.concat([_long_frame(), _long_frame().iloc[[1]]])
    with pytest.raises(DataError, match="duplicated timestamp 2021-01-05"):
        Panel.from_long(frame)


def test_unsorted_dates_are_rejected():
    frame = _long_frame().iloc[[0, 2, 1, 3, 4, 5]]
    with pytest.raises(DataError, match="out of order"):
        Panel.from_long(frame)


def test_wide_interior_nan_rejected_but_late_listing_allowed():
    dates = pd.bdate_range("2021-01-04", periods=4)
    late = pd.DataFrame(
        {"A": [1.0, 2.0, 3.0, 4.0], "B": [np.nan, np.nan, 5.0, 6.0]}, index=dates
    )
    panel = Panel.from_wide(late)
    assert panel.available[:, 1].tolist() == [False, False, True, True]
    holed = late.copy()
    holed.loc[dates[1], "A"] = np.nan
    with pytest.raises(DataError, match="NaN close for A"):
        Panel.from_wide(holed)


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv"):
        load_panel(tmp_path / "nowhere.csv")


def test_between_rejects_dates_outside_the_data():
    panel = load_bundled()
    with pytest.raises(DataError, match=r"1990-01-02 \.\. 2022-12-28"):
        panel.between("2030-01-01", "2031-01-01")
    with pytest.raises(DataError, match="after end"):
        panel.between("2020-01-01", "2019-01-01")


def test_long_file_round_trip(tmp_path):
    panel = Panel.from_long(_long_frame())
    path = tmp_path / "long.parquet"
    panel.to_long().to_parquet(path)
    again = load_panel(path)
    assert again.tickers == panel.tickers
    np.testing.assert_array_equal(again.close, panel.close)


def test_newest_first_file_needs_sort_dates(tmp_path):
    path = tmp_path / "newest_first.csv"
    path.write_text(
        "date,ticker,close\n2021-01-06,A,12\n2021-01-05,A,11\n2021-01-04,A,10\n"
    )
    with pytest.raises(DataError, match="out of order"):
        load_panel(path)
    panel = load_panel(path, sort_dates=True)
    assert panel.close[:, 0].tolist() == [10.0, 11.0, 12.0]


def test_intraday_bars_read_as_daily_are_rejected(tmp_path):
    path = tmp_path / "minutes.csv"
    path.write_text(
        "date,ticker,close\n2021-01-04 09:30,A,10\n2021-01-04 09:31,A,11\n"
        "2021-01-04 09:32,A,12\n"
    )
    with pytest.raises(DataError, match="not daily; pass --interval"):
        load_panel(path)
    assert len(load_panel(path, interval="1m")) == 3
