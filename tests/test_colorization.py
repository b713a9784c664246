"""Colorization: Lab against published values, the ab bins, soft targets and rebalancing
against NumPy, both objectives' losses recomputed from the model's own outputs, and a digits
run that resumes bit-identically."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import colorization, config_lib, export, objectives
from s4l_jax.models import build_model
from testing_utils import load_config, run_full_and_interrupted, tiny

# sRGB (D65) -> CIE Lab of the primaries, secondaries and neutrals: the published reference
# values (Lindbloom's / EasyRGB's calculators), independent of this implementation.
PUBLISHED_LAB = {
    (255, 0, 0): (53.2408, 80.0925, 67.2032), (0, 255, 0): (87.7347, -86.1827, 83.1793),
    (0, 0, 255): (32.2970, 79.1875, -107.8602), (255, 255, 0): (97.1393, -21.5537, 94.4780),
    (0, 255, 255): (91.1132, -48.0875, -14.1312), (255, 0, 255): (60.3242, 98.2343, -60.8249),
    (255, 255, 255): (100.0, 0.0, 0.0), (128, 128, 128): (53.5850, 0.0, 0.0),
    (0, 0, 0): (0.0, 0.0, 0.0)}
Q = len(colorization.ab_bins())


def test_rgb_to_lab_matches_published_values():
  rgb = np.array(list(PUBLISHED_LAB), np.float32) / 255
  np.testing.assert_allclose(colorization.rgb_to_lab(rgb), np.array(list(PUBLISHED_LAB.values())),
                             atol=0.01)


def test_ab_bins_cover_every_srgb_colour_on_the_10_grid():
  bins = colorization.ab_bins()
  assert bins.shape == (Q, 2) == (261, 2)
  assert np.all(bins % 10 == 0) and [0, 0] in bins.tolist()
  assert len(np.unique(bins, axis=0)) == Q
  rgb = np.random.default_rng(0).uniform(0, 1, (5000, 3))
  ab = np.asarray(colorization.rgb_to_lab(rgb))[:, 1:]
  nearest = bins[np.argmin(((ab[:, None] - bins) ** 2).sum(-1), 1)]
  assert np.abs(ab - nearest).max() <= 5.0 + 1e-4  # every colour's own cell is a bin


def np_soft_encode(ab, bins, k, sigma):
  out = np.zeros((len(ab), len(bins)))
  for i, v in enumerate(ab):
    d2 = ((bins - v) ** 2).sum(-1)
    near = np.argsort(d2)[:k]
    w = np.exp(-d2[near] / (2 * sigma ** 2))
    out[i, near] = w / w.sum()
  return out


def test_soft_encode_matches_numpy():
  bins = colorization.ab_bins()
  ab = np.random.default_rng(1).uniform(-60, 60, (7, 2)).astype(np.float32)
  got = np.asarray(colorization.soft_encode(jnp.asarray(ab), bins, 5, 5.0))
  np.testing.assert_allclose(got, np_soft_encode(ab, bins, 5, 5.0), atol=1e-6)
  assert np.all((got > 0).sum(-1) == 5)


def np_rebalance(prior, bins, lam, sigma):
  d2 = ((bins[:, None] - bins[None]) ** 2).sum(-1)
  smoothed = np.exp(-d2 / (2 * sigma ** 2)) @ prior
  smoothed /= smoothed.sum()
  w = 1 / ((1 - lam) * smoothed + lam / len(bins))
  return w / (smoothed * w).sum(), smoothed


def test_rebalance_weights_match_numpy_and_lambda_one_is_uniform():
  bins = colorization.ab_bins()
  prior = np.random.default_rng(2).exponential(size=Q) ** 4
  prior /= prior.sum()
  want, smoothed = np_rebalance(prior, bins, 0.5, 5.0)
  got = np.asarray(colorization.rebalance_weights(jnp.asarray(prior, jnp.float32), bins, 0.5))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert abs((smoothed * got).sum() - 1) < 1e-5
  assert np.argmax(got) == np.argmin(smoothed)  # rare colours weigh most
  np.testing.assert_allclose(colorization.rebalance_weights(jnp.asarray(prior), bins, 1.0),
                             np.ones(Q), rtol=1e-5)


@pytest.fixture(scope="module")
def model_and_vars():
  model = build_model(dict(name="wrn", depth=10, width=1, heads=dict(
      classes=-1, colorization=dict(dims=(Q,), input="feature_map"))), 5)
  init = jax.jit(functools.partial(model.init, train=False))
  return model, jax.device_get(init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))


def np_loss(model, variables, images, counts, lam):
  """The colorization loss from the model's logits on the grey images, in NumPy."""
  bins = colorization.ab_bins().astype(np.float64)
  lab = np.asarray(colorization.rgb_to_lab((images + 1) / 2), np.float64)
  grey = np.repeat(lab[..., :1] / 50 - 1, 3, axis=-1).astype(np.float32)
  outputs, _ = model.apply(variables, grey, train=True, mutable=["batch_stats"])
  b = len(images)
  logits = np.asarray(outputs["colorization"], np.float64).reshape(b, 4, 4, Q)  # 16 px / 4
  ab = lab[..., 1:].reshape(b, 4, 4, 4, 4, 2).mean(axis=(2, 4)).reshape(-1, 2)
  targets = np_soft_encode(ab, bins, 5, 5.0)
  nearest = np.argmin(((ab[:, None] - bins) ** 2).sum(-1), 1)
  counts = counts + np.bincount(nearest, minlength=Q)
  weights, _ = np_rebalance(counts / counts.sum(), bins, lam, 5.0)
  logits = logits.reshape(-1, Q)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return np.mean(weights[nearest] * -(targets * logp).sum(1)), counts, outputs


@pytest.mark.parametrize("name", ["colorization", "s4l_colorization"])
@pytest.mark.slow
def test_losses_match_numpy_and_count_the_bins(model_and_vars, name):
  model, variables = model_and_vars
  rng = np.random.default_rng(3)
  image = lambda: rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  batch = {"unlabeled": {"image": image()},
           "labeled": {"image": image(), "label": np.array([0, 3, 4], np.int32)}}
  counts = rng.integers(0, 50, Q).astype(np.float32)
  lc = config_lib.ml_collections.ConfigDict(dict(neighbours=5, sigma=5.0, rebalance_lambda=0.3,
                                                 color_weight=0.7))
  module = objectives.get(name)
  fn = jax.jit(functools.partial(module.loss_fn, model=model, loss_config=lc))
  loss, _, metrics, state = fn(variables["params"], variables["batch_stats"], batch,
                                 jax.random.PRNGKey(0), aux={"state": {"bin_counts": counts}})
  color, new_counts, _ = np_loss(model, variables, batch["unlabeled"]["image"], counts, 0.3)
  np.testing.assert_allclose(metrics["color_loss"], color, rtol=2e-4)
  np.testing.assert_array_equal(state["bin_counts"], new_counts)
  assert state["bin_counts"].sum() == counts.sum() + 3 * 16
  want = color
  if name == "s4l_colorization":
    outputs, _ = model.apply(variables, batch["labeled"]["image"], train=True,
                             mutable=["batch_stats"])
    logits = np.asarray(outputs["classes"], np.float64)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -logp[np.arange(3), batch["labeled"]["label"]].mean() + 0.7 * color
  np.testing.assert_allclose(loss, want, rtol=2e-4)


def test_bad_colorization_configs_fail_in_one_line():
  from s4l_jax import validation  # pylint: disable=g-import-not-at-top
  c = load_config("colorization", "dataset=digits")
  c.model.heads.colorization.dims = (10,)
  with pytest.raises(ValueError, match=r"^model.heads.colorization must be dict\(dims=\(261,\)"):
    validation.validate(c)
  c = load_config("s4l_colorization", "dataset=digits")
  c.loss.rebalance_lambda = 1.5
  with pytest.raises(ValueError, match=r"^loss.rebalance_lambda=1.5 must be in \[0, 1\] "
                                       r"\(objective s4l_colorization\)$"):
    validation.validate(c)


@pytest.mark.slow
def test_digits_run_resumes_bit_identically_and_exports(tmp_path):
  config = lambda: tiny(load_config("colorization", "dataset=digits"), steps=4, batch=8,
                        image_size=16)
  a, b = run_full_and_interrupted(config, tmp_path)
  # digits are grey: every cell is the neutral bin, 4 steps x 8 images x 4 x 4 cells
  neutral = colorization.ab_bins().tolist().index([0, 0])
  assert a["objective_state"]["bin_counts"][neutral] == a["objective_state"]["bin_counts"].sum()
  assert a["objective_state"]["bin_counts"].sum() == 4 * 8 * 16
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert export.load_description(str(tmp_path / "resumed" / "export"))["method"] == "colorization"
