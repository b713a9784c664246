"""benchmarks/accelerator.py: its pure pieces against closed forms, and the --smoke run end to end
(CPU, tiny sizes: the same phases, JSON and Markdown as on an accelerator)."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import accelerator as acc  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_peak_bf16_by_device_kind():
  assert acc.peak_bf16("NVIDIA H100 80GB HBM3")[0] == 989.4  # SXM
  assert acc.peak_bf16("NVIDIA H100 PCIe")[0] == 756.5
  assert acc.peak_bf16("NVIDIA H200 NVL")[0] == 835.5
  assert acc.peak_bf16("NVIDIA H100 NVL")[0] == 835.5
  assert acc.peak_bf16("NVIDIA H200")[0] == 989.4
  assert acc.peak_bf16("cpu") is None


def test_le_steps_fits_the_time_left():
  kinds = [k for ks in acc.LE_KINDS.values() for k in ks]
  assert len(kinds) == 6 and acc.LE_SAFETY == 0.6
  step_s = {k: 0.125 for k in kinds}  # one step of all runs: 2 label counts x 6 x 0.125 = 1.5 s
  assert acc.le_steps(step_s, 300.0, 2, 10) == 120  # 0.6 x 300 / 1.5
  assert acc.le_steps(step_s, 320.0, 2, 10) == 120  # 128, down to a multiple of 10
  assert acc.le_steps(step_s, 300.0, 1, 10) == 240
  assert acc.le_steps(step_s, -5.0, 2, 10) == 10  # at least one eval interval
  assert acc.le_steps(step_s, 1e9, 2, 10, max_steps=500) == 500
  with pytest.raises(KeyError):
    acc.le_steps({"supervised": 0.1}, 300.0, 2, 10)  # every kind must be timed


class _Flat(nn.Module):

  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(5)(x.reshape(x.shape[0], -1))


def test_forward_flops_closed_form():
  model = _Flat()
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 3)), False)
  assert acc.forward_flops(model, variables, (2, 2, 3)) == 2 * 12 * 5 + 5  # matmul + bias


def test_parse_junit(tmp_path):
  path = tmp_path / "r.xml"
  path.write_text(
      '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
      '<testcase classname="tests.test_a" name="test_ok"/>'
      '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
      '<testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>'
      '<testcase classname="tests.test_b" name="test_skip"><skipped/></testcase>'
      '</testsuite></testsuites>')
  assert acc.parse_junit(str(path)) == dict(
      tests=4, failures=1, errors=1, skipped=1,
      failed=["tests.test_a::test_bad", "tests.test_b::test_err"])


def test_parse_model():
  assert acc.parse_model("depth=28,width=2,dtype=bfloat16") == dict(depth=28, width=2,
                                                                     dtype="bfloat16")


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
  """Every phase runs and reports: tests pass, every throughput row is timed, every method
  trains at the smoke label count and is scored on the 100 fake test images."""
  out = tmp_path / "acc"
  # One device, as on the GPU machine (conftest's 8 fake CPU devices would need batches of 8).
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = ROOT
  # --budget_s=840 (not the smoke's 600): beside another xdist worker on 2 cores, compiling the
  # 10 throughput rows overran the smoke's 270 s throughput phase (0.45 x budget) once.
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "accelerator.py"), "--smoke",
                  "--budget_s=840", f"--work_dir={tmp_path / 'work'}", f"--output={out}"],
                 cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
  r = json.loads((tmp_path / "acc.json").read_text())
  assert r["tests"]["finished"] and r["tests"]["tests"] >= 1
  assert r["tests"]["failures"] == r["tests"]["errors"] == 0
  rows = {row["row"]: row for row in r["throughput"]["rows"]}
  assert len(rows) == 4 + sum(map(len, acc.LE_KINDS.values()))
  assert all("error" not in row and row["step_s"] > 0 for row in rows.values()), rows
  assert rows["resnet50v1 simclrv2_pretrain"]["views_per_step"] == 2 * (2 + 14)  # 2 crops each
  assert rows["resnet50v2 supervised"]["forward_flops_per_image"] > 0
  moam = rows["resnet50v2x4 moam_step1"]
  assert moam["fits"] == (moam["peak_gib"] <= 16.0)
  e = r["label_efficiency"]
  assert e["steps"] == 4 and e["fitted_steps"] >= e["evals"]
  assert [row["method"] for row in e["rows"]] == list(acc.LE_METHODS)
  for row in e["rows"]:
    assert row["test_top1"] is not None and 0.0 <= row["test_top1"] <= 1.0, row
    assert abs(100 * row["test_top1"] - round(100 * row["test_top1"])) < 1e-6  # k of 100 images
  md = (tmp_path / "acc.md").read_text()
  assert "| resnet50v2x4 moam_step1 |" in md and "| simclrv2 | 40 |" in md
