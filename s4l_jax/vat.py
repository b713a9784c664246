"""Virtual Adversarial Training (Miyato et al. 2018) as in S4L (`s4l:semi_supervised/vat*.py`).

`apply_fn(x) -> logits` must be a pure closure over the parameters. S4L runs
the perturbed forward passes with training-mode BatchNorm (statistics of the
perturbed batch itself) but frozen moving averages, so the caller applies the
model with `train=True, mutable=["batch_stats"]` and discards the returned
batch_stats, e.g.

  apply_fn = lambda x: model.apply(
      {"params": params, "batch_stats": bs}, x, train=True,
      mutable=["batch_stats"])[0]["classes"]

KL directions (`kl_direction`):
  "perturbed_clean": KL(p(x + r) || p(x)), the released S4L code
    (`kl_divergence_from_logits(perturbed, clean)`); default, for fidelity with
    the paper's numbers.
  "clean_perturbed": KL(p(x) || p(x + r)), Miyato et al. (the paper's intent).
Both have the same Hessian at r = 0, so the power iteration targets the same
direction; the final loss values differ.

Quirk kept on purpose: with xi = 1e-6 (the S4L default) x + r mostly rounds to x
in float32 for images in [-1, 1], so the single power iteration is dominated
by numerical noise (on a 224 x 224 x 3 image each value moves by xi / 388, about
2.6e-9). Use a larger xi for a faithful Hessian-vector product.

Normalisation of the directions (`normalization`):
  "exact_eps": scale-invariant (see `_normalize`), so r_adv always has norm eps;
    default, a deliberate deviation.
  "released": `tf.math.l2_normalize(d, epsilon=1e-12)` as the released
    `vat_utils.normalize`, d / sqrt(max(||d||^2, 1e-12)): a direction with norm
    below 1e-6 is shortened, r_adv = eps * ||g|| / 1e-6 < eps
    (benchmarks/vat_normalization.py measures how often on a trained model).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from s4l_jax import losses

Array = jax.Array

KL_DIRECTIONS = ("perturbed_clean", "clean_perturbed")
NORMALIZATIONS = ("exact_eps", "released")


def _kl(perturbed_logits: Array, clean_logits: Array, kl_direction: str) -> Array:
  """(N,) KL between perturbed and clean predictions in the given direction."""
  if kl_direction == "perturbed_clean":
    return losses.kl_divergence(perturbed_logits, clean_logits)
  return losses.kl_divergence(clean_logits, perturbed_logits)


def _check_direction(kl_direction: str):
  if kl_direction not in KL_DIRECTIONS:
    raise ValueError(
        f"kl_direction must be one of {KL_DIRECTIONS}, got {kl_direction!r}")


def _check_normalization(normalization: str):
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"VAT normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _normalize_released(d: Array) -> Array:
  """`tf.math.l2_normalize(d, epsilon=1e-12)` over all non-batch axes (S4L `vat_utils`)."""
  return losses.l2_normalize(d, axis=tuple(range(1, d.ndim)), eps=1e-12)


def _normalize(d: Array) -> Array:
  """Per-example unit L2 norm over all non-batch axes, for any scale of d.

  Dividing by max|d| first (as in Miyato et al.'s code) keeps the result unit
  norm even when ||d||^2 < 1e-12, as happens for the power-iteration gradient
  (~ xi · lambda_max / N). The S4L code's `tf.math.l2_normalize(eps=1e-12)`
  would instead shrink such directions, so its r_adv could be far below eps.
  """
  axes = tuple(range(1, d.ndim))
  d = d / (jnp.max(jnp.abs(d), axis=axes, keepdims=True)
           + jnp.finfo(d.dtype).tiny)
  return losses.l2_normalize(d, axis=axes, eps=1e-12)


def vat_perturbation(apply_fn: Callable[[Array], Array], x: Array,
                     clean_logits: Array, rng: Array, *, eps: float,
                     xi: float = 1e-6, num_iters: int = 1,
                     kl_direction: str = "perturbed_clean",
                     normalization: str = "exact_eps") -> Array:
  """Virtual adversarial perturbation by the power method.

  d ~ N(0, I); repeat `num_iters` times: r = xi · d/||d||,
  d = grad_r mean_i KL_i(r) (finite-difference Hessian-vector product).
  Returns eps · d/||d|| (norms per example over all non-batch axes; `released`:
  d / sqrt(max(||d||^2, 1e-12)) in both places). The result
  is a stop-gradient: nothing flows from it into x, clean_logits or the
  parameters closed over by `apply_fn`.

  Args:
    apply_fn: pure function (N, ...) inputs -> (N, C) logits.
    x: (N, ...) clean inputs.
    clean_logits: (N, C) logits at x (normally apply_fn(x) from the main pass).
    rng: PRNG key for the initial direction.
    eps: L2 norm of the perturbation per example.
    xi: finite-difference step of the power iteration.
    num_iters: number of power iterations.
    kl_direction: "perturbed_clean" (S4L code) or "clean_perturbed" (Miyato).
    normalization: "exact_eps" (norm exactly eps) or "released" (S4L code).

  Returns:
    r_adv with the shape and dtype of x.
  """
  _check_direction(kl_direction)
  _check_normalization(normalization)
  normalize = _normalize if normalization == "exact_eps" else _normalize_released
  x = jax.lax.stop_gradient(x)
  clean_logits = jax.lax.stop_gradient(clean_logits)

  def mean_kl(r):
    return jnp.mean(_kl(apply_fn(x + r), clean_logits, kl_direction))

  d = jax.random.normal(rng, x.shape, x.dtype)
  for _ in range(num_iters):
    d = jax.lax.stop_gradient(jax.grad(mean_kl)(xi * normalize(d)))
  return eps * normalize(d)


def vat_loss(apply_fn: Callable[[Array], Array], x: Array, clean_logits: Array,
             rng: Array, *, eps: float, xi: float = 1e-6, num_iters: int = 1,
             kl_direction: str = "perturbed_clean",
             normalization: str = "exact_eps") -> Array:
  """VAT loss mean_i KL(p(x_i + r_adv,i), stop_gradient(p(x_i))).

  The gradient flows only through the perturbed prediction apply_fn(x + r_adv)
  (r_adv and the clean logits are stop-gradients). Arguments as in
  `vat_perturbation`.

  Returns:
    Scalar loss.
  """
  r_adv = vat_perturbation(apply_fn, x, clean_logits, rng, eps=eps, xi=xi,
                           num_iters=num_iters, kl_direction=kl_direction,
                           normalization=normalization)
  clean_logits = jax.lax.stop_gradient(clean_logits)
  return jnp.mean(_kl(apply_fn(x + r_adv), clean_logits, kl_direction))
