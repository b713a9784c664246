"""FGSM: the perturbation is eps times the sign of the closed-form gradient of a linear model."""
import jax.numpy as jnp
import numpy as np

from s4l_jax.evaluators import fgsm


def test_fgsm_steps_eps_along_the_sign_of_the_gradient_and_clips():
  rng = np.random.default_rng(0)
  w, b = rng.normal(size=(48, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
  logits_fn = lambda x: x.reshape(len(x), -1) / 255.0 @ w + b
  pixels = rng.integers(20, 236, (6, 4, 4, 3)).astype(np.uint8)
  labels = rng.integers(0, 5, 6)
  eps = 8.0
  adversarial = np.asarray(fgsm.fgsm(logits_fn, jnp.asarray(pixels), jnp.asarray(labels), eps))
  # d CE / d x = (softmax(logits) - onehot) W^T / 255, per example
  logits = pixels.reshape(6, -1).astype(np.float64) / 255 @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  gradient = ((p - np.eye(5)[labels]) @ w.T / 255).reshape(pixels.shape)
  delta = adversarial - pixels
  np.testing.assert_array_equal(delta, eps * np.sign(gradient))  # no pixel within eps of 0/255
  assert np.abs(delta).max() == eps
  # the pixel range bounds it: a white image pushed up stays 255
  white = np.full((6, 4, 4, 3), 255, np.uint8)
  out = np.asarray(fgsm.fgsm(logits_fn, jnp.asarray(white), jnp.asarray(labels), 300.0))
  assert out.min() >= 0 and out.max() <= 255 and set(np.unique(out)) <= {0.0, 255.0}
