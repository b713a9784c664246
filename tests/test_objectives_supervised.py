"""Supervised objective: integer labels or soft pseudo-labels; the rng drives only model noise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import losses
from s4l_jax.models import build_model
from s4l_jax.objectives import supervised

MODEL = dict(name="wrn", depth=10, width=1)


def _setup(**noise):
  model = build_model(dict(MODEL, **noise), 5)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(-1, 1, (6, 8, 8, 3)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), images, train=False)
  labels = jnp.asarray(rng.integers(0, 5, 6), jnp.int32)
  return model, variables, {"image": images, "label": labels}


def _loss(model, variables, labeled, rng):
  return supervised.loss_fn(variables["params"], variables["batch_stats"], {"labeled": labeled},
                            rng, model=model, loss_config={}, aux={})


@pytest.mark.slow
def test_without_noise_the_rng_changes_nothing_bit_for_bit():
  """Defaults (dropout 0, stochastic_depth 1): the loss, stats and gradients are those of the
  forward without an rng, whatever the rng."""
  model, variables, labeled = _setup()
  out, new = model.apply(variables, labeled["image"], train=True, mutable=["batch_stats"])
  expected = losses.softmax_xent(out["classes"], labeled["label"])
  for seed in (0, 1):
    loss, stats, _, _ = _loss(model, variables, labeled, jax.random.PRNGKey(seed))
    np.testing.assert_array_equal(loss, expected)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(new["batch_stats"])):
      np.testing.assert_array_equal(a, b)
  grad = lambda seed: jax.grad(lambda p: _loss(model, {**variables, "params": p}, labeled,
                                               jax.random.PRNGKey(seed))[0])(variables["params"])
  for a, b in zip(jax.tree.leaves(grad(0)), jax.tree.leaves(grad(1))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_noise_follows_the_rng():
  model, variables, labeled = _setup(dropout=0.5, stochastic_depth=0.5)
  loss = lambda seed: _loss(model, variables, labeled, jax.random.PRNGKey(seed))[0]
  assert loss(0) == loss(0) and loss(0) != loss(1)


def test_soft_labels_give_the_soft_cross_entropy():
  model, variables, labeled = _setup()
  targets = np.random.default_rng(1).dirichlet(np.ones(5), size=6).astype(np.float32)
  loss, _, metrics, _ = _loss(model, variables, dict(labeled, soft_label=jnp.asarray(targets)),
                             jax.random.PRNGKey(0))
  logits = np.asarray(model.apply(variables, labeled["image"], train=True,
                                  mutable=["batch_stats"])[0]["classes"], np.float64)
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(loss, np.mean(-(targets * log_q).sum(-1)), rtol=1e-5)
  np.testing.assert_allclose(metrics["sup_accuracy"],
                             np.mean(logits.argmax(-1) == np.asarray(labeled["label"])))


def test_pseudo_stream_adds_its_mean_cross_entropy():
  """Noisy Student's separate batches: one forward over both streams (BN over all 6 images),
  loss = mean xent(first 2, labels) + mean soft xent(last 4, pseudo targets)."""
  model, variables, images = _setup()
  targets = np.random.default_rng(2).dirichlet(np.ones(5), size=4).astype(np.float32)
  labeled = {"image": images["image"][:2], "label": images["label"][:2]}
  pseudo = {"image": images["image"][2:], "label": jnp.asarray(targets.argmax(-1)),
            "soft_label": jnp.asarray(targets)}
  loss, _, metrics, _ = supervised.loss_fn(
      variables["params"], variables["batch_stats"], {"labeled": labeled, "pseudo": pseudo},
      jax.random.PRNGKey(0), model=model, loss_config={}, aux={})
  logits = np.asarray(model.apply(variables, images["image"], train=True,
                                  mutable=["batch_stats"])[0]["classes"], np.float64)
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  sup = -np.mean(log_q[np.arange(2), np.asarray(labeled["label"])])
  soft = np.mean(-(targets * log_q[2:]).sum(-1))
  np.testing.assert_allclose([metrics["sup_loss"], metrics["pseudo_loss"], loss],
                             [sup, soft, sup + soft], rtol=1e-5)
  np.testing.assert_allclose(metrics["pseudo_accuracy"],
                             np.mean(logits[2:].argmax(-1) == targets.argmax(-1)))
