"""The backtest and pools commands end to end, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import DJ30_DIR, needs_dj30

from finrl_lab.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backtest_writes_a_complete_run_folder(tmp_path, capsys):
    code, out, err = _run(
        capsys,
        "backtest",
        "--pool",
        "sp20-health",
        "--start",
        "2018-01-01",
        "--end",
        "2019-12-31",
        "--out",
        str(tmp_path),
        "--cost-bps",
        "5",
    )
    assert code == 0, err
    for agent in ("market", "ew", "momentum", "olmar", "pamr", "minvar"):
        assert agent in out
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert folder.name.startswith("backtest-sp20-health-")
    names = {p.name for p in folder.iterdir()}
    assert {
        "config.yaml",
        "environment.json",
        "metrics.json",
        "metrics.csv",
        "values.csv",
        "equity.png",
        "weights",
    } <= names
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["cost_rate"] == pytest.approx(0.0005)
    assert config["pool"]["tickers"] == ["JNJ", "LLY", "MRK", "PFE", "UNH"]
    metrics = json.loads((folder / "metrics.json").read_text())
    values = pd.read_csv(folder / "values.csv", index_col=0)
    ew = values["ew"].to_numpy()
    assert metrics["ew"]["total_return"] == pytest.approx(ew[-1] / ew[0] - 1)
    weights = pd.read_csv(folder / "weights" / "minvar.csv", index_col=0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert (folder / "equity.png").read_bytes()[:4] == b"\x89PNG"


def test_pools_command_lists_tickers(capsys):
    code, out, _ = _run(capsys, "pools")
    assert code == 0
    assert "dj30-financial" in out
    assert "AXP GS JPM" in out


@needs_dj30
def test_backtest_on_real_dow_jones_files(tmp_path, capsys):
    code, out, err = _run(
        capsys,
        "backtest",
        "--data",
        str(DJ30_DIR),
        "--pool",
        "dj30-tech",
        "--start",
        "2019-07-23",
        "--end",
        "2021-01-08",
        "--out",
        str(tmp_path),
        "--no-plot",
    )
    assert code == 0, err
    metrics = json.loads(next(tmp_path.glob("backtest-*/metrics.json")).read_text())
    assert set(metrics) == {"market", "ew", "momentum", "olmar", "pamr", "minvar"}


def _bad_csv(folder, rows):
    folder.mkdir()
    path = folder / "prices.csv"
    path.write_text("date,ticker,close\n" + "\n".join(rows) + "\n")
    return str(path)


GOOD_ROWS = ["2021-01-04,A,10", "2021-01-05,A,11", "2021-01-06,A,12"]


@pytest.mark.parametrize(
    ("case", "argv", "expected"),
    [
        ("missing path", ["--data", "no/such/folder"], "does not exist"),
        ("unknown pool", ["--pool", "nasdaq100"], "unknown pool 'nasdaq100'"),
        ("unknown ticker", ["--pool", "AAPL,ZZZZ"], "ZZZZ not in"),
        ("empty pool", ["--pool", " , "], "empty"),
        ("dates outside", ["--start", "2030-01-01", "--end", "2031-01-01"], "no bars"),
        (
            "reversed dates",
            ["--start", "2020-01-01", "--end", "2019-01-01"],
            "after end",
        ),
        ("bad date", ["--start", "yesterday-ish"], "invalid date"),
        ("unknown agent", ["--agents", "ew,oracle"], "unknown agent 'oracle'"),
        ("negative cost", ["--cost-bps", "-1"], "cost-bps"),
        ("nan price", ["CSV", "2021-01-04,A,10", "2021-01-05,A,nan"], "NaN"),
        ("zero price", ["CSV", "2021-01-04,A,10", "2021-01-05,A,0"], "zero"),
        ("negative price", ["CSV", "2021-01-04,A,10", "2021-01-05,A,-2"], "negative"),
        ("duplicated date", ["CSV", *GOOD_ROWS, "2021-01-05,A,11"], "duplicated"),
        (
            "unsorted dates",
            ["CSV", "2021-01-05,A,10", "2021-01-04,A,11"],
            "out of order",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, argv, expected):
    if argv[0] == "CSV":
        rows = [a for a in argv[1:] if "," in a]
        argv = ["--data", _bad_csv(tmp_path / "data", rows), *argv[1 + len(rows) :]]
    if "CSVDIR" in argv:
        argv[argv.index("CSVDIR")] = _bad_csv(tmp_path / "data", GOOD_ROWS)
    out_dir = tmp_path / "runs"
    code, _, err = _run(capsys, "backtest", *argv, "--out", str(out_dir))
    assert code == 2, case
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_output_path_file_rejected_early(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, out, err = _run(capsys, "backtest", "--agents", "ew", "--out", str(blocker))
    assert code == 2
    assert "cannot write run folders" in err
    assert out == ""


def test_per_ticker_file_with_text_close(tmp_path, capsys):
    folder = tmp_path / "tickers"
    folder.mkdir()
    (folder / "AAA.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2021-01-04,1,1,1,1,1,10\n2021-01-05,1,1,1,oops,1,10\n2021-01-06,1,1,1,1,1,10\n"
    )
    code, _, err = _run(
        capsys, "backtest", "--data", str(folder), "--out", str(tmp_path / "runs")
    )
    assert code == 2
    assert "non-numeric close 'oops'" in err


def test_daily_files_in_different_time_zones_align(tmp_path, capsys):
    folder = tmp_path / "zones"
    folder.mkdir()
    dates = pd.bdate_range("2021-01-04", periods=30)
    for ticker, offset in (("AAA", "+00:00"), ("BBB", "-05:00"), ("CCC", "+09:00")):
        stamps = [f"{d.date()}T00:00:00{offset}" for d in dates]
        closes = np.linspace(10, 12, len(dates))
        pd.DataFrame({"date": stamps, "close": closes}).to_csv(
            folder / f"{ticker}.csv", index=False
        )
    code, _, err = _run(
        capsys,
        "backtest",
        "--data",
        str(folder),
        "--agents",
        "ew",
        "--out",
        str(tmp_path / "runs"),
        "--no-plot",
    )
    assert code == 0, err
    values = pd.read_csv(next((tmp_path / "runs").glob("*/values.csv")), index_col=0)
    assert len(values) == 30
    assert values.index[0].startswith("2021-01-04")


def test_lower_case_tickers_in_data_match_any_case(tmp_path, capsys):
    folder = tmp_path / "lower"
    folder.mkdir()
    dates = pd.bdate_range("2021-01-04", periods=30)
    for ticker in ("aapl", "msft"):
        pd.DataFrame({"date": dates, "close": np.linspace(5, 6, 30)}).to_csv(
            folder / f"{ticker}.csv", index=False
        )
    for pool in ([], ["--pool", "AAPL,msft"]):
        code, _, err = _run(
            capsys,
            "backtest",
            "--data",
            str(folder),
            *pool,
            "--agents",
            "ew",
            "--out",
            str(tmp_path / "runs"),
            "--no-plot",
        )
        assert code == 0, err


def test_parent_from_user_file_is_the_global_pool(tmp_path, capsys):
    path = tmp_path / "family.yaml"
    path.write_text(
        "big: [AAPL, MSFT, KO]\nsmall:\n  parent: big\n  tickers: [AAPL, KO]\n"
    )
    code, _, err = _run(
        capsys,
        "backtest",
        "--pool",
        f"{path}:small",
        "--agents",
        "ew",
        "--start",
        "2020-01-01",
        "--out",
        str(tmp_path / "runs"),
        "--no-plot",
    )
    assert code == 0, err
    config = yaml.safe_load(next((tmp_path / "runs").glob("*/config.yaml")).read_text())
    assert config["global_pool"] == ["AAPL", "MSFT", "KO"]
    assert config["pool"]["tickers"] == ["AAPL", "KO"]


def test_undefined_metrics_are_null_in_json(tmp_path, capsys):
    code, _, err = _run(
        capsys,
        "backtest",
        "--pool",
        "KO",
        "--agents",
        "ew",
        "--start",
        "2020-01-02",
        "--end",
        "2020-01-03",
        "--out",
        str(tmp_path),
        "--no-plot",
    )
    assert code == 0, err
    text = next(tmp_path.glob("*/metrics.json")).read_text()
    assert "NaN" not in text
    assert json.loads(text)["ew"]["sharpe"] is None


def test_momentum_on_a_short_history(tmp_path, capsys):
    code, _, err = _run(
        capsys,
        "backtest",
        "--agents",
        "momentum",
        "--start",
        "1990-01-02",
        "--end",
        "1990-01-25",
        "--out",
        str(tmp_path),
        "--no-plot",
    )
    assert code == 0, err


def test_data_info_on_the_bundled_dataset(capsys):
    code, out, err = _run(capsys, "data", "info", "sp500")
    assert code == 0, err
    assert "AAPL" in out
