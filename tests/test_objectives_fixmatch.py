"""FixMatch: loss vs NumPy with a hand-built mask, no gradient through the pseudo-label, a run."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import objectives
from s4l_jax.models import build_model
from s4l_jax.objectives import fixmatch
from testing_utils import ROOT, load_config, tiny


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_unlabeled_loss_with_a_hand_built_mask():
  """Rows 0, 2 confident (>= 0.95), rows 1, 3 not: L_u = (ce_0 + ce_2) / 4."""
  weak = np.array([[8.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 9.0], [0.0, 2.0, 0.0]],
                  np.float32)
  strong = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  loss, mask, pseudo = fixmatch.unlabeled_loss(weak, strong, 0.95)
  np.testing.assert_array_equal(mask, [1, 0, 1, 0])
  np.testing.assert_array_equal(pseudo, [0, 0, 2, 1])
  logp = _log_softmax(strong.astype(np.float64))
  np.testing.assert_allclose(loss, -(logp[0, 0] + logp[2, 2]) / 4, rtol=1e-6)
  assert float(fixmatch.unlabeled_loss(weak, strong, 1.0)[0]) == 0.0  # nothing passes


@pytest.fixture(scope="module")
def setup():
  config = tiny(load_config("fixmatch", "dataset=digits"))
  model = build_model(config.model, 10)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
                                        train=False))
  rng = np.random.default_rng(0)
  batch = {"labeled": {"image": rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32),
                       "label": rng.integers(0, 10, 4).astype(np.int32)},
           "unlabeled": {"image": rng.uniform(-1, 1, (6, 2, 8, 8, 3)).astype(np.float32),
                         "label": rng.integers(0, 10, 6).astype(np.int32)}}
  return config, model, variables, batch


def _logits(model, variables, batch):
  lab, unl = batch["labeled"], batch["unlabeled"]
  x = np.concatenate([lab["image"], unl["image"][:, 0], unl["image"][:, 1]])
  return np.asarray(model.apply(variables, x, train=True, mutable=["batch_stats"])[0]["classes"],
                    np.float64)


@pytest.mark.slow
def test_loss_matches_numpy_on_one_forward_pass(setup):
  config, model, variables, batch = setup
  logits = _logits(model, variables, batch)
  weak, strong = logits[4:10], logits[10:]
  probs = np.exp(_log_softmax(weak))
  threshold = float(np.median(probs.max(-1)))  # about half the images pass
  loss_config = config.loss.copy_and_resolve_references()
  loss_config.threshold, loss_config.unlabeled_weight = threshold, 2.5
  loss, _, metrics, _ = fixmatch.loss_fn(variables["params"], variables["batch_stats"], batch,
                                        None, model=model, loss_config=loss_config, aux={})
  lab, unl = batch["labeled"], batch["unlabeled"]
  sup = -np.mean(_log_softmax(logits[:4])[np.arange(4), lab["label"]])
  mask = probs.max(-1) >= threshold
  assert 0 < mask.sum() < 6
  pseudo = probs.argmax(-1)
  unsup = -np.sum(mask * _log_softmax(strong)[np.arange(6), pseudo]) / 6
  np.testing.assert_allclose(metrics["sup_loss"], sup, rtol=1e-5)
  np.testing.assert_allclose(metrics["unsup_loss"], unsup, rtol=1e-4)
  np.testing.assert_allclose(loss, sup + 2.5 * unsup, rtol=1e-5)
  np.testing.assert_allclose(metrics["mask_rate"], mask.mean())
  np.testing.assert_allclose(metrics["pseudo_label_accuracy"], np.mean(pseudo == unl["label"]))
  np.testing.assert_allclose(metrics["mask_correct_rate"],
                             np.mean(mask & (pseudo == unl["label"])))
  # Labels equal to the pseudo-labels on every other image: the masked ones among those count.
  right = np.where(np.arange(6) % 2 == 0, pseudo, (pseudo + 1) % 10).astype(np.int32)
  batch_right = dict(batch, unlabeled=dict(unl, label=right))
  _, _, m2, _ = fixmatch.loss_fn(variables["params"], variables["batch_stats"], batch_right,
                                None, model=model, loss_config=loss_config, aux={})
  np.testing.assert_allclose(m2["mask_correct_rate"], np.mean(mask & (np.arange(6) % 2 == 0)))
  np.testing.assert_allclose(metrics["sup_accuracy"],
                             np.mean(logits[:4].argmax(-1) == lab["label"]))


def test_no_gradient_flows_through_the_pseudo_label():
  """d L_u / d weak logits = 0; d L_u / d strong logits = mask * (softmax - onehot) / B_u."""
  rng = np.random.default_rng(1)
  weak = jnp.asarray(rng.normal(size=(5, 4)) * 4, jnp.float32)
  strong = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  probs = np.exp(_log_softmax(np.asarray(weak, np.float64)))
  threshold = float(np.median(probs.max(-1)))
  g_weak, g_strong = jax.grad(lambda w, s: fixmatch.unlabeled_loss(w, s, threshold)[0],
                              argnums=(0, 1))(weak, strong)
  assert not np.any(np.asarray(g_weak))
  mask = (probs.max(-1) >= threshold)[:, None]
  assert 0 < mask.sum() < 5
  onehot = np.eye(4)[probs.argmax(-1)]
  want = mask * (np.exp(_log_softmax(np.asarray(strong, np.float64))) - onehot) / 5
  np.testing.assert_allclose(g_strong, want, atol=1e-6)


@pytest.mark.slow
def test_main_trains_the_digits_preset_and_evaluates_with_the_ema(tmp_path):
  workdir = str(tmp_path / "fm")
  proc = subprocess.run(
      [sys.executable, "main.py", "--config=configs/fixmatch.py:dataset=digits,steps=20",
       f"--workdir={workdir}", "--config.input.image_size=8",
       "--config.input.labeled.batch_size=16", "--config.input.unlabeled.batch_size=112"],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["method"] == "fixmatch" and results["steps"] == 20
  assert 0.0 <= results["top1"] <= 1.0
  assert results["top1"] == results["evals"]["test"]["ema_top1"]  # evaluated with the EMA
  objectives.check_config(load_config("fixmatch", "dataset=digits"))


@pytest.mark.parametrize("arg, labels, mu, threshold", [
    ("", "250", 7, 0.95), ("labels=40", "40", 7, 0.95), ("labels=4000", "4000", 7, 0.95),
    ("dataset=imagenet2012", "10pct", 5, 0.7)])
def test_paper_rows(arg, labels, mu, threshold):
  c = load_config("fixmatch", arg)
  assert (c.labels, c.loss.threshold) == (labels, threshold)
  assert c.input.unlabeled.batch_size == mu * c.input.labeled.batch_size
  assert c.ema_decay == 0.999 and c.optimizer.nesterov
  if not arg.startswith("dataset"):
    assert (c.model.depth, c.model.width, c.input.labeled.batch_size) == (28, 2, 64)
    assert (c.lr.schedule, c.lr.base, c.lr.warmup_epochs) == ("fixmatch_cosine", 0.03, 0.0)
    assert c.optimizer.weight_decay == 5e-4 and c.total_steps == 2 ** 20


@pytest.mark.parametrize("arg, total_steps, ema_decay", [
    ("regime=paper", 2 ** 20, 0.999), ("dataset=folder:/data/c,regime=paper", 2 ** 20, 0.999),
    ("regime=small", 3000, 0.99), ("dataset=folder:/data/c", 3000, 0.99),
    ("dataset=digits", 300, 0.99)])
def test_regime_picks_the_papers_row_or_the_cpu_check(arg, total_steps, ema_decay):
  """paper: the dataset's row (CIFAR-10's off ImageNet); small: 3/4 of the small steps."""
  c = load_config("fixmatch", arg)
  assert (c.total_steps, c.ema_decay, c.lr.schedule, c.lr.base) == (
      total_steps, ema_decay, "fixmatch_cosine", 0.03)
  assert c.input.unlabeled.batch_size == 7 * c.input.labeled.batch_size
