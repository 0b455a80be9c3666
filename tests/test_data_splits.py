"""Date splits: EarnMore preset, validation of windows, walk-forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finrl_lab.data.panel import Panel
from finrl_lab.data.splits import PRESETS, DateSplit, get_preset, walk_forward
from finrl_lab.errors import ConfigError, DataError

DJ30 = Path(__file__).resolve().parents[2] / "shared/data/us_stocks/earnmore_dj30"


def daily_panel(start="2008-01-01", end="2022-12-23") -> Panel:
    timestamps = pd.bdate_range(start, end, tz="UTC")
    close = np.linspace(10, 20, len(timestamps))[:, None, None]
    return Panel(timestamps, ("A",), ("close",), close, np.ones((len(close), 1), bool))


def test_earnmore_preset_windows():
    splits = get_preset("earnmore")
    assert [s.name for s in splits] == ["earnmore-0", "earnmore-1", "earnmore-2"]
    assert splits[0].valid == ("2018-01-26", "2019-07-22")
    assert splits[1].valid == ("2019-07-23", "2021-01-08")
    assert splits[2].valid == ("2021-01-08", "2022-06-26")
    assert all(s.train[0] is None for s in splits)
    assert splits[2].test[1] is None


@pytest.mark.skipif(not DJ30.is_dir(), reason="shared DJ30 data absent")
def test_earnmore_rows_on_dj30():
    from finrl_lab.data.local import load_panel

    # One ticker gives the trading calendar of the Dow Jones files.
    panel = load_panel(DJ30 / "AAPL.csv.gz").between("2008-06-13", "2022-12-22")
    previous_train = 0
    for split in PRESETS["earnmore"]:
        rows = split.rows(panel)
        assert rows.train.start == 0
        assert rows.train.stop == rows.valid.start
        assert rows.valid.stop == rows.test.start
        assert rows.train.stop > previous_train
        previous_train = rows.train.stop
        # EarnMore reports about 372 trading days per later window.
        assert 365 <= rows.valid.stop - rows.valid.start <= 380
    last = PRESETS["earnmore"][2].rows(panel)
    assert last.test.stop == len(panel)


def test_rows_are_disjoint_and_cover_dates():
    panel = daily_panel()
    split = DateSplit(
        ("2008-01-01", "2015-12-31"), ("2016-01-01", "2017-12-31"), ("2018-01-01", None)
    )
    rows = split.rows(panel)
    assert panel.timestamps[rows.train.stop - 1] <= pd.Timestamp("2015-12-31", tz="UTC")
    assert panel.timestamps[rows.valid.start] >= pd.Timestamp("2016-01-01", tz="UTC")
    assert panel.timestamps[rows.valid.stop - 1].date().isoformat() == "2017-12-29"
    assert rows.test.stop == len(panel)


@pytest.mark.parametrize(
    ("train", "valid", "test", "message"),
    [
        (
            ("2008-01-01", "2016-06-30"),
            ("2016-01-01", "2017-12-31"),
            ("2018-01-01", None),
            "the valid window starts 2016-01-01, not after the "
            "train window ends 2016-06-30",
        ),
        (
            ("2008-01-01", "2015-12-31"),
            ("2016-01-01", "2017-12-31"),
            ("2017-12-31", None),
            "the test window starts 2017-12-31",
        ),
        (
            ("2008-01-01", "2015-12-31"),
            ("2017-01-01", "2016-01-01"),
            ("2018-01-01", None),
            "valid window starts 2017-01-01 after it ends",
        ),
        (
            ("2008-01-01", "2015-12-31"),
            ("2016-01-01", "2017-13-31"),
            ("2018-01-01", None),
            "invalid valid end date '2017-13-31'",
        ),
        (
            (None, None),
            ("2016-01-01", "2017-12-31"),
            ("2018-01-01", None),
            "the train end of split",
        ),
    ],
)
def test_invalid_windows_rejected(train, valid, test, message):
    with pytest.raises(ConfigError, match=message):
        DateSplit(train, valid, test)


def test_windows_outside_data_rejected():
    panel = daily_panel("2010-01-01", "2020-12-31")
    early = DateSplit(
        ("2009-01-01", "2015-12-31"), ("2016-01-01", "2017-12-31"), ("2018-01-01", None)
    )
    with pytest.raises(
        DataError,
        match="train window starts 2009-01-01, before the first bar 2010-01-01",
    ):
        early.rows(panel)
    late = DateSplit(
        (None, "2015-12-31"), ("2016-01-01", "2017-12-31"), ("2018-01-01", "2021-06-30")
    )
    with pytest.raises(
        DataError, match="test window ends 2021-06-30, after the last bar 2020-12-31"
    ):
        late.rows(panel)
    with pytest.raises(ConfigError, match="unknown split preset"):
        get_preset("finrl")


def test_walk_forward_expands_training():
    splits = walk_forward(
        "2010-01-01",
        "2020-12-31",
        first_test="2016-01-01",
        test_length="1Y",
        valid_length="6M",
    )
    assert len(splits) == 5
    panel = daily_panel("2010-01-01", "2020-12-31")
    previous = None
    for split in splits:
        rows = split.rows(panel)
        assert split.train[0] == "2010-01-01"
        assert rows.train.stop == rows.valid.start
        assert rows.valid.stop == rows.test.start
        if previous is not None:
            assert rows.train.stop > previous.train.stop
            assert rows.test.start == previous.test.stop
        previous = rows
    assert splits[0].valid == ("2015-07-01", "2015-12-31")
    assert splits[-1].test == ("2020-01-01", "2020-12-31")
    with pytest.raises(ConfigError, match="invalid length '6 months'"):
        walk_forward(
            None,
            "2020-12-31",
            first_test="2016-01-01",
            test_length="6 months",
            valid_length="6M",
        )
