"""Runner records: outcomes written to metrics.json read back for the summary."""

from __future__ import annotations

import math

from finrl_lab.io import write_json_atomic
from finrl_lab.training.registry import TrainOutcome
from finrl_lab.training.runner import _outcome_record, _read_outcome, summarise


def test_finished_seed_with_nan_reads_back(tmp_path):
    cash_only = {"total_return": 0.0, "sharpe": float("nan")}
    outcome = TrainOutcome(test_metrics=cash_only, baseline_metrics={"ew": cash_only})
    path = write_json_atomic(tmp_path / "metrics.json", _outcome_record(outcome))
    assert '"sharpe": null' in path.read_text()
    read = _read_outcome(path)
    assert math.isnan(read.test_metrics["sharpe"])
    assert math.isnan(read.baseline_metrics["ew"]["sharpe"])
    other = TrainOutcome(test_metrics={"total_return": 0.5, "sharpe": 1.0})
    summary = summarise({0: read, 1: other})
    assert summary["mean"]["total_return"] == 0.25
    assert math.isnan(summary["mean"]["sharpe"])
