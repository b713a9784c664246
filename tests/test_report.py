"""The report draws a PNG from a workdir's events and results.json; without matplotlib, one
line."""
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from s4l_jax import metrics, report
from testing_utils import ROOT


def _workdir(path, with_evals=True):
  """A finished run: TensorBoard validation / kNN curves and results.json."""
  path.mkdir()
  writer = metrics.MetricWriter(str(path))
  for step, top1 in ((10, 0.4), (20, 0.6)):
    writer.write_scalars(step, {"validation/top1": top1, "knn/validation/top1": top1 + 0.1})
  writer.close()
  evals = {"test": {"top1": 0.6}}
  if with_evals:
    evals.update(
        linear_probe={"test": {"block1": 0.3, "block2": 0.5, "pre_logits": 0.6}},
        corruptions={"test": {"gaussian_noise_s1": 0.5, "gaussian_noise": 0.4, "mean": 0.4}},
        fgsm={"test": {"eps0": 0.6, "eps1": 0.3}},
        per_class={"test": {"confusion_matrix": [[3, 1], [0, 2]]}})
  (path / "results.json").write_text(json.dumps(dict(top1=0.6, evals=evals)))
  return str(path)


def test_report_draws_one_png_for_several_runs(tmp_path):
  runs = [_workdir(tmp_path / "a"), _workdir(tmp_path / "b", with_evals=False)]
  out = str(tmp_path / "report.png")
  report.main(["report", *runs, f"--out={out}"])
  image = np.asarray(Image.open(out))
  assert image.shape[0] > 400 and image.shape[1] > 600 and image.std() > 0


def test_report_without_matplotlib_fails_in_one_line(tmp_path):
  run = _workdir(tmp_path / "a")
  code = ("import sys; sys.modules['matplotlib'] = None; from s4l_jax import report; "
          f"report.main(['report', {run!r}])")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 1
  assert out.stderr.strip() == ("ERROR: s4l_jax.report draws with matplotlib, which is not "
                                "installed (pip install matplotlib)")
  missing = subprocess.run([sys.executable, "-m", "s4l_jax.report", str(tmp_path / "none")],
                           cwd=ROOT, capture_output=True, text=True)
  assert missing.stderr.strip() == (f"ERROR: {tmp_path / 'none'} has no results.json (not a "
                                    "finished run)")
