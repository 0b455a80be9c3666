"""RunLogger: CSV rows, SB3 metrics through the same logger, rows after a resume."""

from __future__ import annotations

import csv

from finrl_lab.training.logger import RunLogger


def read_rows(folder):
    with (folder / "scalars.csv").open(newline="") as handle:
        return list(csv.reader(handle))


def test_logger_writes_long_csv(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log_many({"valid/sharpe": 1.5, "train/loss": 0.25}, step=10)
    logger.close()
    rows = read_rows(tmp_path)
    assert rows[0] == ["step", "key", "value"]
    assert rows[1:] == [["10", "valid/sharpe", "1.5"], ["10", "train/loss", "0.25"]]


def test_logger_resume_drops_later_rows(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log("x", step * 1.0, step)
    logger.close()
    resumed = RunLogger(tmp_path, tensorboard=False, resume_step=3)
    resumed.log("x", 40.0, 4)
    resumed.close()
    steps = [row[0] for row in read_rows(tmp_path)[1:]]
    assert steps == ["1", "2", "3", "4"]
    assert read_rows(tmp_path)[-1][2] == "40.0"


def test_sb3_logger_feeds_same_files(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=True)
    sb3 = logger.sb3_logger()
    sb3.record("train/value_loss", 0.5)
    sb3.record("train/note", "text values are skipped")
    sb3.dump(step=32)
    logger.close()
    rows = read_rows(tmp_path)[1:]
    assert rows == [["32", "train/value_loss", "0.5"]]
    assert list((tmp_path / "tensorboard").glob("events.*"))
