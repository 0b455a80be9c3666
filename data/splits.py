"""Train, validation and test windows given by dates, and expanding walk-forward.

A window is a pair ``(start, end)`` of dates, both inclusive; a date without a
time covers the whole day. ``None`` as the training start means the first bar of
the data and ``None`` as the test end means the last bar. Windows must be in
order and must not overlap. :meth:`DateSplit.rows` turns a split into row slices
of a panel and rejects windows that reach outside the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from finrl_lab.data.panel import Panel
from finrl_lab.errors import ConfigError, DataError

DateLike = str | pd.Timestamp | None
Window = tuple[DateLike, DateLike]
_LENGTH = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)


class SplitRows(NamedTuple):
    """Row slices of a panel for the three windows of a split."""

    train: slice
    valid: slice
    test: slice


def _parse_date(value: DateLike, what: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid {what} date {value!r}: {exc}", "use YYYY-MM-DD"
        ) from None
    if ts is pd.NaT:
        raise ConfigError(f"invalid {what} date {value!r}", "use YYYY-MM-DD")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _is_date_only(value: DateLike) -> bool:
    if isinstance(value, str):
        return len(value.strip()) <= 10
    return isinstance(value, pd.Timestamp) and value == value.normalize()


def _window_end(value: DateLike, what: str) -> pd.Timestamp | None:
    """Return the last instant a window end covers: the end of its day if a date."""
    ts = _parse_date(value, what)
    if ts is not None and _is_date_only(value):
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return ts


def _show(value: DateLike) -> str:
    return "open" if value is None else str(value)


@dataclass(frozen=True)
class DateSplit:
    """Train, validation and test windows, each ``(start, end)`` with inclusive dates.

    :param train: training window; its start may be None (first bar of the data).
    :param valid: validation window, after the training window.
    :param test: test window, after the validation window; its end may be None
        (last bar of the data).
    :param name: a label for run records, such as ``earnmore-0``.
    :raises ConfigError: a date is invalid, a window ends before it starts, or the
        windows are out of order or overlap.
    """

    train: Window
    valid: Window
    test: Window
    name: str = ""

    def __post_init__(self) -> None:
        for label in ("train", "valid", "test"):
            window = getattr(self, label)
            if not isinstance(window, tuple | list) or len(window) != 2:
                raise ConfigError(
                    f"{label} window {window!r} is not a (start, end) pair",
                    "give two dates such as ('2010-01-01', '2015-12-31')",
                )
            object.__setattr__(self, label, tuple(window))
        required = {
            "valid start": self.valid[0],
            "valid end": self.valid[1],
            "test start": self.test[0],
            "train end": self.train[1],
        }
        for what, value in required.items():
            if value is None:
                raise ConfigError(
                    f"the {what} of split {self.name or '(unnamed)'} is missing",
                    "only the train start and the test end may be left open",
                )
        for label in ("train", "valid", "test"):
            start, end = getattr(self, label)
            first = _parse_date(start, f"{label} start")
            last = _window_end(end, f"{label} end")
            if first is not None and last is not None and first > last:
                raise ConfigError(
                    f"{label} window starts {start} after it ends {end}",
                    "swap or correct the dates",
                )
        pairs = (
            ("train", self.train, "valid", self.valid),
            ("valid", self.valid, "test", self.test),
        )
        for before, early, after, late in pairs:
            early_end = _window_end(early[1], f"{before} end")
            late_start = _parse_date(late[0], f"{after} start")
            if late_start <= early_end:
                raise ConfigError(
                    f"the {after} window starts {late[0]}, not after the {before} "
                    f"window ends {early[1]}",
                    f"start {after} after {early[1]} so the windows do not overlap",
                )

    def windows(self) -> dict[str, Window]:
        """Return the windows by name: train, valid, test."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def rows(self, panel: Panel) -> SplitRows:
        """Return the row slices of ``panel`` for the three windows.

        :raises DataError: a window reaches before the first bar or after the
            last bar of the panel, or contains no bar.
        """
        first_bar, last_bar = panel.timestamps[0], panel.timestamps[-1]
        where = panel.source or "the dataset"
        slices = {}
        for label, (start, end) in self.windows().items():
            lo = _parse_date(start, f"{label} start")
            hi = _window_end(end, f"{label} end")
            if lo is not None and lo < first_bar.floor("D"):
                raise DataError(
                    f"{label} window starts {start}, before the first bar "
                    f"{first_bar.date()} of {where}",
                    f"start it on or after {first_bar.date()}, or leave the train "
                    "start open",
                )
            if hi is not None and hi > last_bar.floor("D") + pd.Timedelta(days=1):
                raise DataError(
                    f"{label} window ends {end}, after the last bar "
                    f"{last_bar.date()} of {where}",
                    f"end it on or before {last_bar.date()}, or leave the test end "
                    "open",
                )
            try:
                slices[label] = panel.slice_positions(start, end)
            except DataError:
                raise DataError(
                    f"the {label} window {_show(start)} .. {_show(end)} contains no "
                    f"bar of {where}",
                    f"choose dates within {first_bar.date()} .. {last_bar.date()}",
                ) from None
        return SplitRows(**slices)


def parse_length(text: str) -> pd.DateOffset:
    """Parse a calendar length such as ``90D``, ``4W``, ``6M`` or ``1Y``.

    :raises ConfigError: the text is not a count followed by D, W, M or Y.
    """
    match = _LENGTH.match(str(text))
    if not match:
        raise ConfigError(
            f"invalid length {text!r}",
            "use a count and a unit: D (days), W (weeks), M (months) or Y (years)",
        )
    count, unit = int(match.group(1)), match.group(2).upper()
    if count <= 0:
        raise ConfigError(f"invalid length {text!r}", "the count must be positive")
    key = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}[unit]
    return pd.DateOffset(**{key: count})


def walk_forward(
    start: DateLike,
    end: DateLike,
    *,
    first_test: DateLike,
    test_length: str,
    valid_length: str,
    step: str | None = None,
) -> list[DateSplit]:
    """Build expanding walk-forward splits between two dates.

    Split k tests from ``first_test + k * step`` for ``test_length`` (the last test
    window is cut at ``end``). Its validation window is the ``valid_length`` just
    before the test window, and its training window runs from ``start`` to the
    day before validation, so training grows with k.

    :param start: first training date; None for the first bar of the data.
    :param end: last date of the data to use.
    :param first_test: first date of the first test window.
    :param test_length: calendar length of each test window, such as ``6M``.
    :param valid_length: calendar length of each validation window.
    :param step: how far each split moves; defaults to ``test_length``.
    :raises ConfigError: the dates or lengths are invalid or leave no training days.
    """
    end_ts = _parse_date(end, "end")
    first_test_ts = _parse_date(first_test, "first test")
    start_ts = _parse_date(start, "start")
    if end_ts is None or first_test_ts is None:
        raise ConfigError(
            "walk-forward needs an end date and a first test date",
            "pass end= and first_test= as YYYY-MM-DD",
        )
    test_span, valid_span = parse_length(test_length), parse_length(valid_length)
    step_span = parse_length(step) if step else test_span
    one_day = pd.Timedelta(days=1)
    splits = []
    k = 0
    while True:
        test_start = (first_test_ts + step_span * k).normalize()
        if test_start > end_ts:
            break
        test_end = min(test_start + test_span - one_day, end_ts.normalize())
        valid_start = test_start - valid_span
        train_end = valid_start - one_day
        if start_ts is not None and train_end < start_ts:
            raise ConfigError(
                f"walk-forward split {k} leaves no training days: validation starts "
                f"{valid_start.date()}, at or before the start {start}",
                "move first_test later or shorten valid_length",
            )
        splits.append(
            DateSplit(
                train=(start, str(train_end.date())),
                valid=(str(valid_start.date()), str((test_start - one_day).date())),
                test=(str(test_start.date()), str(test_end.date())),
                name=f"walk-forward-{k}",
            )
        )
        k += 1
    if not splits:
        raise ConfigError(
            f"first test date {first_test} is after the end {end}",
            "choose a first test date before the end",
        )
    return splits


# EarnMore's three expanding splits, as the data groups of the authors' code
# (github.com/DVampire/EarnMore) define them: training from the first bar, then
# validation, then test. The EarnMore paper reports the validation windows here
# as its test periods, because that code picks the checkpoint on them.
PRESETS: dict[str, list[DateSplit]] = {
    "earnmore": [
        DateSplit(
            train=(None, "2018-01-25"),
            valid=("2018-01-26", "2019-07-22"),
            test=("2019-07-23", "2021-01-08"),
            name="earnmore-0",
        ),
        DateSplit(
            train=(None, "2019-07-22"),
            valid=("2019-07-23", "2021-01-08"),
            test=("2021-01-09", "2022-06-26"),
            name="earnmore-1",
        ),
        DateSplit(
            train=(None, "2021-01-07"),
            valid=("2021-01-08", "2022-06-26"),
            test=("2022-06-27", None),
            name="earnmore-2",
        ),
    ],
}


def get_preset(name: str) -> list[DateSplit]:
    """Return the named list of splits.

    :raises ConfigError: no preset has that name.
    """
    if name not in PRESETS:
        raise ConfigError(
            f"unknown split preset {name!r}", f"choose one of: {', '.join(PRESETS)}"
        )
    return list(PRESETS[name])
