"""A digits run with `evals=full`: every evaluator's figures in results.json and TensorBoard,
consistent with the top-1 evaluator, the export's endpoints (`embed`) and `aggregate`."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from s4l_jax import aggregate, distributed, embed, evaluators, events, runner
from s4l_jax.data import sources
from s4l_jax.evaluators import corruptions
from s4l_jax.models import build_model
from testing_utils import ROOT, load_config, tiny

SPLITS = ("validation", "test")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct,evals=full"), steps=4)
  config.eval_every_steps = 2  # one periodic evaluation (step 2) and the final one (step 4)
  config.evals.linear_probe.steps = 30
  workdir = str(tmp_path_factory.mktemp("evals"))
  return workdir, runner.run(config, workdir)


@pytest.mark.slow
def test_every_evaluator_on_every_split(full_run):
  workdir, results = full_run
  evals = results["evals"]
  for name in evaluators.FULL:
    assert set(evals[name]) == set(SPLITS), name
  for split in SPLITS:
    top1 = results["top1" if split == "test" else "validation_top1"]
    # the clean (eps 0) FGSM pass and the confusion matrix's diagonal are the top-1 accuracy
    assert evals["fgsm"][split]["eps0"] == pytest.approx(top1)
    assert evals["per_class"][split]["accuracy"] == pytest.approx(top1)
    assert set(evals["fgsm"][split]) == {"eps0", "eps1", "eps2", "eps4", "eps8"}
    assert set(evals["linear_probe"][split]) == {"block1", "block2", "block3", "pre_logits"}
    assert 0 <= evals["knn"][split]["top1"] <= 1
    matrix = np.array(evals["per_class"][split]["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == (
        results["num_validation"] if split == "validation" else 360)
    names = corruptions.SEVERITIES
    assert len(evals["corruptions"][split]) == 6 * len(names) + 1
    assert evals["corruptions"][split]["mean"] == pytest.approx(
        np.mean([evals["corruptions"][split][n] for n in names]))
    assert os.path.exists(os.path.join(workdir, "evals", f"per_class_{split}.png"))
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["evals"] == json.loads(json.dumps(evals))


@pytest.mark.slow
def test_tensorboard_has_periodic_validation_and_final_figures(full_run):
  workdir, results = full_run
  scalars = events.read_scalars(workdir)
  assert [s for s, _ in scalars["knn/validation/top1"]] == [2, 4]
  assert [s for s, _ in scalars["knn/test/top1"]] == [4]  # model selection never sees test
  assert scalars["linear_probe/test/block2"][0][1] == pytest.approx(
      results["evals"]["linear_probe"]["test"]["block2"])
  assert "corruptions/test/pixelate_s5" in scalars and "per_class/test/class_9" in scalars
  curve = [v for _, v in scalars["validation/top1"]]
  assert results["validation_top1_evals"] == 2
  assert results["validation_top1_best"] == max(curve)
  assert results["validation_top1_median"] == pytest.approx(np.median(curve))


@pytest.mark.slow
def test_embed_writes_the_exports_features(full_run, tmp_path):
  workdir, results = full_run
  out = str(tmp_path / "f.npz")
  subprocess.run([sys.executable, "-m", "s4l_jax.embed", f"--export_dir={workdir}/export",
                  "--dataset=digits", "--split=test", "--endpoint=classes", f"--out={out}"],
                 cwd=ROOT, check=True, capture_output=True)
  with np.load(out) as f:
    features, labels, endpoint = f["features"], f["labels"], str(f["endpoint"])
  assert endpoint == "classes" and features.shape == (360, 10)
  np.testing.assert_array_equal(labels, sources.load_split("digits", "test", image_size=8).labels)
  assert np.mean(features.argmax(1) == labels) == pytest.approx(results["top1"])
  block = embed.embed_export(f"{workdir}/export", "digits", "validation", "block2")
  assert block["features"].shape == (results["num_validation"], 32)
  with pytest.raises(ValueError, match=r"has no endpoint 'logits'; endpoints: block1, block2"):
    embed.embed_export(f"{workdir}/export", "digits", "test", "logits")


@pytest.mark.slow
def test_aggregate_over_runs(full_run):
  workdir, results = full_run
  summary = aggregate.aggregate([workdir, workdir])
  assert summary["top1"] == dict(mean=results["top1"], std=0.0, n=2)
  assert summary["evals.knn.test.top1"]["mean"] == results["evals"]["knn"]["test"]["top1"]


def test_unknown_knn_endpoint_fails_before_training():
  config = load_config("supervised", "dataset=digits,evals=full")
  config.evals.knn.endpoint = "proj_1"
  data = types.SimpleNamespace(image_shape=(8, 8, 3))
  model = build_model(dict(name="wrn", depth=10, width=1), 10)
  with pytest.raises(ValueError, match=r"^evals.knn.endpoint: the model has no endpoint "
                     r"'proj_1'; endpoints: block1, block2, block3, pre_logits, classes$"):
    evaluators.Evaluators(model, config, data, distributed.make_mesh(), "/nowhere")
