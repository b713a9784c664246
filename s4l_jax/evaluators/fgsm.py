"""The fast gradient sign method (Goodfellow et al. 2015, "Explaining and harnessing
adversarial examples"): x + eps * sign(grad_x cross-entropy(f(x), y)), in pixel units.
"""
import jax
import jax.numpy as jnp
import optax


def fgsm(logits_fn, pixels, labels, eps):
  """Adversarial pixels float32 (N, H, W, C) in [0, 255]: `pixels` (uint8 values) moved by
  `eps` pixel levels along the sign of the loss gradient, then clipped to the pixel range.

  `logits_fn(pixels float32 in [0, 255]) -> (N, K)`.
  """
  pixels = pixels.astype(jnp.float32)
  loss = lambda x: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), labels))
  return jnp.clip(pixels + eps * jnp.sign(jax.grad(loss)(pixels)), 0.0, 255.0)
