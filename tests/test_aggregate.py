"""Validation-curve statistics and mean ± std over runs."""
import json
import statistics
import subprocess
import sys

import pytest

from s4l_jax import aggregate
from testing_utils import ROOT


def test_curve_stats():
  curve = [(10, 0.5), (20, 0.7), (30, 0.6), (40, 0.65)]
  assert aggregate.curve_stats(curve, last_k=3) == dict(
      validation_top1_best=0.7, validation_top1_best_step=20, validation_top1_median=0.65,
      validation_top1_median_of_last=3, validation_top1_evals=4)
  assert aggregate.curve_stats(curve, last_k=20)["validation_top1_median"] == 0.625
  assert aggregate.curve_stats([], last_k=3) == {}


def _run(path, top1, knn, stages=False):
  path.mkdir()
  results = dict(top1=top1, method="x", evals={"knn": {"test": {"top1": knn}}}, ok=True)
  if stages:
    results = dict(stages={"a": dict(top1=0.0), "b": results}, wall_s=1.0)
  (path / "results.json").write_text(json.dumps(results))
  return str(path)


def test_mean_and_sample_std_over_runs(tmp_path):
  dirs = [_run(tmp_path / "s0", 0.5, 0.1), _run(tmp_path / "s1", 0.7, 0.3),
          _run(tmp_path / "s2", 0.6, 0.2, stages=True)]  # a pipeline: its last stage
  summary = aggregate.aggregate(dirs)
  assert set(summary) == {"top1", "evals.knn.test.top1"}  # numbers only; not bools
  assert summary["top1"]["mean"] == pytest.approx(0.6)
  assert summary["top1"]["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6]))
  assert summary["evals.knn.test.top1"]["n"] == 3


def test_cli_fails_in_one_line_without_results(tmp_path):
  out = subprocess.run([sys.executable, "-m", "s4l_jax.aggregate", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True)
  assert out.returncode == 1
  assert out.stderr.strip() == f"ERROR: {tmp_path} has no results.json (not a finished run)"
