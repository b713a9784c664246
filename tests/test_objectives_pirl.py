"""PIRL: the NCE loss and the memory-bank update against NumPy, the whole loss from the
model's own outputs, and a digits run whose bank resumes bit-identically."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import config_lib, export, losses, objectives
from s4l_jax.data import views
from s4l_jax.models import build_model
from s4l_jax.objectives import pirl
from testing_utils import load_config, run_full_and_interrupted, tiny


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_nce(m, q, neg, tau, ratio, z=1.0):
  h = lambda s: np.exp(s / tau) / z / (np.exp(s / tau) / z + ratio)
  return np.mean([-np.log(h(m[i] @ q[i])) - np.log(1 - h(neg @ q[i])).sum()
                  for i in range(len(q))])


@pytest.mark.slow
def test_nce_matches_numpy():
  rng = np.random.default_rng(0)
  m, q, neg = (unit(rng.normal(size=s)) for s in ((3, 4), (3, 4), (5, 4)))
  got = losses.pirl_nce(jnp.asarray(m), jnp.asarray(q), jnp.asarray(neg), 0.5, 5 / 40, 1.5)
  np.testing.assert_allclose(got, np_nce(m, q, neg, 0.5, 5 / 40, np.exp(1.5)), rtol=1e-5)
  z = 40 * np.mean(np.exp(q @ neg.T / 0.5))  # Wu et al.: |D| x the mean of exp(s / T)
  np.testing.assert_allclose(losses.nce_log_normalizer(jnp.asarray(q), jnp.asarray(neg), 0.5, 40),
                             np.log(z), rtol=1e-5)


def test_bank_update_moves_only_the_batch_rows():
  rng = np.random.default_rng(1)
  bank = unit(rng.normal(size=(6, 4))).astype(np.float32)
  f = unit(rng.normal(size=(2, 4))).astype(np.float32)
  new = np.asarray(pirl.update_bank(jnp.asarray(bank), jnp.array([4, 1]), jnp.asarray(f), 0.5))
  want = bank.copy()
  want[[4, 1]] = unit(0.5 * bank[[4, 1]] + 0.5 * f)
  np.testing.assert_allclose(new, want, rtol=1e-6)
  np.testing.assert_array_equal(new[[0, 2, 3, 5]], bank[[0, 2, 3, 5]])


@pytest.mark.slow
def test_loss_matches_numpy_from_the_models_outputs():
  heads = dict(classes=-1, pirl_image=4, pirl_tiles=36)
  model = build_model(dict(name="wrn", depth=10, width=1, heads=heads), 3)
  variables = jax.device_get(jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))
  lc = config_lib.ml_collections.ConfigDict(dict(
      bank_size=10, embed_dim=4, bank_momentum=0.5, num_negatives=6, temperature=0.2,
      nce_lambda=0.3))
  rng, key = np.random.default_rng(2), jax.random.PRNGKey(7)
  images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  batch = {"unlabeled": {"image": images, "index": np.array([7, 2], np.int32)}}
  state = pirl.init_state(config_lib.ml_collections.ConfigDict(dict(loss=lc)),
                          jax.random.PRNGKey(1))
  fn = jax.jit(functools.partial(pirl.loss_fn, model=model, loss_config=lc,
                                 aux={"state": state}))
  value, _, metrics, new_state = fn(variables["params"], variables["batch_stats"], batch, key)

  apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
  k_tiles, k_order, k_neg = jax.random.split(key, 3)  # the draws the loss documents
  tiles = np.asarray(views.make_ops_fn("jigsaw_tiles")(k_tiles, images)["image"], np.float64)
  tiles = (tiles - tiles.mean(axis=(2, 3, 4), keepdims=True)) / np.sqrt(
      tiles.var(axis=(2, 3, 4), keepdims=True) + 1e-5)
  order = [np.asarray(jax.random.permutation(k, 9)) for k in jax.random.split(k_order, 2)]
  features = np.asarray(apply(variables, tiles.reshape(-1, 4, 4, 3).astype(np.float32))[0][
      "pre_logits"], np.float64)
  kernel = np.asarray(variables["params"]["head_pirl_tiles"]["kernel"], np.float64)
  bias = np.asarray(variables["params"]["head_pirl_tiles"]["bias"], np.float64)
  stacked = np.concatenate([kernel[:, 4 * j:4 * j + 4] for j in range(9)])  # (9 D, 4)
  g = unit(np.stack([np.concatenate([features[9 * i + t] for t in order[i]]) @ stacked
                     + bias.reshape(9, 4).sum(0) for i in range(2)]))
  f = unit(np.asarray(apply(variables, images)[0]["pirl_image"], np.float64))
  bank = np.asarray(state["bank"], np.float64)
  neg = bank[np.asarray(jax.random.randint(k_neg, (6,), 0, 10))]
  m = bank[[7, 2]]
  z = 10 * np.mean(np.exp(f @ neg.T / 0.2))  # step 0: Z estimated from f and the negatives
  np.testing.assert_allclose(new_state["log_z"], np.log(z), rtol=1e-5)
  tiles_nce, image_nce = np_nce(m, g, neg, 0.2, 0.6, z), np_nce(m, f, neg, 0.2, 0.6, z)
  np.testing.assert_allclose([metrics["nce_tiles_loss"], metrics["nce_image_loss"]],
                             [tiles_nce, image_nce], rtol=1e-4)
  np.testing.assert_allclose(value, 0.3 * tiles_nce + 0.7 * image_nce, rtol=1e-4)
  want = bank.copy()
  want[[7, 2]] = unit(0.5 * m + 0.5 * f)
  np.testing.assert_allclose(new_state["bank"], want, rtol=1e-5, atol=1e-6)


def test_bad_bank_size_fails_in_one_line():
  from s4l_jax import validation  # pylint: disable=g-import-not-at-top
  c = load_config("pirl", "dataset=digits")
  c.loss.bank_size = 0
  with pytest.raises(ValueError,
                     match=r"^loss.bank_size=0 must be in \[1, inf\) \(objective pirl\)$"):
    validation.validate(c)


@pytest.mark.slow
def test_digits_run_resumes_the_bank_bit_identically(tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  def config():
    c = tiny(load_config("pirl", "dataset=digits"), steps=4, batch=8, image_size=16)
    c.loss.num_negatives = 64
    return c
  a, b = run_full_and_interrupted(config, tmp_path)
  with ocp.StandardCheckpointer() as checkpointer:
    start = checkpointer.restore(str(tmp_path / "full" / "checkpoints" / "2" / "default"))
  assert a["objective_state"]["bank"].shape == (1437, 128)
  # Z is estimated at step 0 and then kept.
  assert a["objective_state"]["log_z"] == start["objective_state"]["log_z"] != 0
  assert not np.array_equal(a["objective_state"]["bank"], start["objective_state"]["bank"])
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  resumed_export = str(tmp_path / "resumed" / "export")
  assert set(export.load_variables(resumed_export)) == {"params", "batch_stats"}
