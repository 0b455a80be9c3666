"""Near-stationary segments of a long bar series, each split into train/valid/test.

Two ways to cut the series:

- :func:`fixed_blocks`: consecutive calendar blocks of ``block_days`` days, as the
  Safe-FinRL code did (5-day blocks of 1-minute bars, split 3/1/1 days).
- :func:`change_point_blocks`: blocks between change points in the volatility of
  log returns, found with ``ruptures`` (PELT on the log of squared returns, so a
  shift in the mean of that series is a shift in volatility).

Each block is then split by whole days into train, validation and test parts in
the given proportions (:func:`split_block`). Training episodes are drawn across
the train parts of all blocks; validation and test run over their own parts.
:func:`summarize_segments` tabulates each block's return statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finrl_lab.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("fixed", "changepoint")
_DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class Segment:
    """One near-stationary block split into train, validation and test rows.

    Each part is a ``(start_row, end_row)`` pair in the env's convention:
    decisions at ``start_row .. end_row - 1`` and the final valuation at
    ``end_row``. Consecutive parts share their boundary row, so no bar's return
    is counted in two parts.
    """

    index: int
    train: tuple[int, int]
    valid: tuple[int, int]
    test: tuple[int, int]

    @property
    def rows(self) -> tuple[int, int]:
        """The whole block, from the first train row to the last test row."""
        return self.train[0], self.test[1]


def split_block(
    timestamps: pd.DatetimeIndex,
    start: int,
    end: int,
    proportions: Sequence[float],
    index: int = 0,
) -> Segment | None:
    """Split rows ``start .. end`` into train/valid/test parts by whole days.

    The validation and test parts get ``round(days * p)`` whole days each (at
    least one), counted back from the block's end; the train part gets the rest.
    Returns None when the block spans fewer than three days.
    """
    if len(proportions) != 3 or min(proportions) <= 0:
        raise ConfigError(
            f"invalid split proportions {list(proportions)}",
            "give three positive numbers for train, valid and test, e.g. [3, 1, 1]",
        )
    total = float(sum(proportions))
    stamps = timestamps.as_unit("ns").asi8
    span_days = (stamps[end] - stamps[start]) / _DAY_NS
    days = int(np.floor(span_days + 1e-9))
    if days < 3:
        return None
    valid_days = max(1, round(days * proportions[1] / total))
    test_days = max(1, round(days * proportions[2] / total))
    if valid_days + test_days >= days:
        return None
    test_start = _row_at(stamps, stamps[end] - test_days * _DAY_NS, start, end)
    valid_start = _row_at(
        stamps, stamps[end] - (test_days + valid_days) * _DAY_NS, start, end
    )
    if not start < valid_start < test_start < end:
        return None
    return Segment(
        index, (start, valid_start), (valid_start, test_start), (test_start, end)
    )


def _row_at(stamps: np.ndarray, when: int, start: int, end: int) -> int:
    row = int(np.searchsorted(stamps, when, side="left"))
    return min(max(row, start), end)


def fixed_blocks(
    timestamps: pd.DatetimeIndex,
    *,
    block_days: float = 5.0,
    proportions: Sequence[float] = (3, 1, 1),
    first_row: int = 0,
) -> list[Segment]:
    """Cut the series into consecutive blocks of ``block_days`` days.

    A trailing block shorter than three days is dropped.
    """
    if block_days < 3:
        raise ConfigError(
            f"invalid block_days {block_days}", "use 3 or more days per block"
        )
    stamps = timestamps.as_unit("ns").asi8
    boundaries = [first_row]
    step = int(block_days * _DAY_NS)
    while True:
        nxt = int(np.searchsorted(stamps, stamps[boundaries[-1]] + step, "left"))
        if nxt >= len(stamps):
            break
        boundaries.append(nxt)
    if boundaries[-1] < len(stamps) - 1:
        boundaries.append(len(stamps) - 1)
    return _blocks_to_segments(timestamps, boundaries, proportions)


def change_point_blocks(
    timestamps: pd.DatetimeIndex,
    close: np.ndarray,
    *,
    min_days: float = 10.0,
    penalty: float | None = None,
    proportions: Sequence[float] = (3, 1, 1),
    first_row: int = 0,
    max_samples: int = 5000,
) -> list[Segment]:
    """Cut the series where the volatility of log returns changes.

    The series ``log(r_t ** 2 + eps)`` of log returns r is averaged into at most
    ``max_samples`` buckets, and ``ruptures.Pelt`` with an ``l2`` cost finds the
    change points of its mean, at least ``min_days`` apart.

    :param penalty: PELT's penalty per change point; by default
        ``3 * log(n) * var`` of the bucketed series (a BIC-like choice).
    """
    try:
        import ruptures
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "segmentation method 'changepoint' needs the ruptures package",
            "pip install ruptures, or use method 'fixed'",
        ) from exc
    returns = np.diff(np.log(close[first_row:]))
    signal = np.log(returns**2 + 1e-12)
    bucket = max(1, int(np.ceil(len(signal) / max_samples)))
    usable = len(signal) // bucket * bucket
    series = signal[:usable].reshape(-1, bucket).mean(axis=1)
    bar_seconds = np.median(np.diff(timestamps.as_unit("ns").asi8)) / 1e9
    min_size = max(2, int(min_days * 86400 / bar_seconds / bucket))
    if penalty is None:
        penalty = 3.0 * np.log(len(series)) * float(np.var(series))
    algo = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(series[:, None])
    breaks = algo.predict(pen=penalty)
    # Break k at bucket b means returns from bucket b on belong to the next block;
    # return index i is the change from row first_row + i to first_row + i + 1.
    boundaries = [first_row]
    for b in breaks[:-1]:
        boundaries.append(first_row + b * bucket)
    boundaries.append(len(timestamps) - 1)
    log.info("change points: %d blocks (penalty %.3g)", len(boundaries) - 1, penalty)
    return _blocks_to_segments(timestamps, boundaries, proportions)


def _blocks_to_segments(
    timestamps: pd.DatetimeIndex,
    boundaries: Sequence[int],
    proportions: Sequence[float],
) -> list[Segment]:
    segments = []
    for start, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        segment = split_block(timestamps, start, end, proportions, len(segments))
        if segment is not None:
            segments.append(segment)
    if not segments:
        raise ConfigError(
            "segmentation left no block of three or more days",
            "use a longer data file or smaller blocks",
        )
    return segments


def make_segments(
    timestamps: pd.DatetimeIndex,
    close: np.ndarray,
    *,
    method: str = "fixed",
    proportions: Sequence[float] = (3, 1, 1),
    first_row: int = 0,
    block_days: float = 5.0,
    min_days: float = 10.0,
    penalty: float | None = None,
) -> list[Segment]:
    """Segment a series with ``method`` ``fixed`` or ``changepoint``."""
    if method == "fixed":
        return fixed_blocks(
            timestamps,
            block_days=block_days,
            proportions=proportions,
            first_row=first_row,
        )
    if method == "changepoint":
        return change_point_blocks(
            timestamps,
            close,
            min_days=min_days,
            penalty=penalty,
            proportions=proportions,
            first_row=first_row,
        )
    raise ConfigError(
        f"unknown segmentation method {method!r}", f"use one of {', '.join(METHODS)}"
    )


def summarize_segments(
    segments: Sequence[Segment], timestamps: pd.DatetimeIndex, close: np.ndarray
) -> pd.DataFrame:
    """Tabulate each segment: dates, bars, and log-return statistics per part.

    Columns: ``start``, ``end`` (UTC), ``bars``, ``train_bars``, ``valid_bars``,
    ``test_bars``, ``mean_return`` and ``volatility`` (per-bar log return over
    the block), ``lag1_autocorr``, ``train_volatility``, ``test_volatility``,
    ``drift`` (total log return of the block).
    """
    log_close = np.log(close)
    rows = []
    for seg in segments:
        start, end = seg.rows
        r = np.diff(log_close[start : end + 1])
        train_r = np.diff(log_close[seg.train[0] : seg.train[1] + 1])
        test_r = np.diff(log_close[seg.test[0] : seg.test[1] + 1])
        autocorr = float(np.corrcoef(r[:-1], r[1:])[0, 1]) if len(r) > 2 else np.nan
        rows.append(
            {
                "segment": seg.index,
                "start": timestamps[start],
                "end": timestamps[end],
                "bars": end - start,
                "train_bars": seg.train[1] - seg.train[0],
                "valid_bars": seg.valid[1] - seg.valid[0],
                "test_bars": seg.test[1] - seg.test[0],
                "mean_return": float(r.mean()),
                "volatility": float(r.std(ddof=1)),
                "lag1_autocorr": autocorr,
                "train_volatility": float(train_r.std(ddof=1)),
                "test_volatility": float(test_r.std(ddof=1)),
                "drift": float(log_close[end] - log_close[start]),
            }
        )
    return pd.DataFrame(rows).set_index("segment")
