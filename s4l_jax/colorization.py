"""Colorization's colour space and targets (Zhang, Isola & Efros 2016), in JAX.

* `rgb_to_lab`: sRGB in [0, 1] -> CIE Lab (D65 white, the sRGB primaries; L in [0, 100],
  a and b roughly in [-110, 110]), the formula of skimage's `rgb2lab`.
* `ab_bins`: the quantised ab space: the centres (Q, 2) of the 10-unit grid cells that some
  sRGB colour falls in (Q = 267; the paper's 313 bins count the cells in gamut by its own
  test), sorted.
* `soft_encode`: each ab value's soft target over the Q bins: its `neighbours` nearest bins
  weighted by a Gaussian of their distance (`sigma`), normalised (the paper: 5, sigma 5).
* `rebalance_weights`: per-bin weights w proportional to ((1 - lam) p~ + lam / Q)^-1, with
  p~ the bin prior convolved with a Gaussian over ab (sigma 5) and sum_q p~_q w_q = 1.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

# sRGB primaries -> CIE XYZ (D65), and the D65 reference white (skimage's constants).
RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                       [0.212671, 0.715160, 0.072169],
                       [0.019334, 0.119193, 0.950227]])
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
BIN_SIZE = 10.0  # ab units per grid cell
_GAMUT_STEP = 3  # sRGB levels 0, 3, .., 255 per channel find every reachable cell


def rgb_to_lab(rgb):
  """(..., 3) sRGB in [0, 1] -> (..., 3) float32 Lab (L, a, b)."""
  rgb = jnp.asarray(rgb, jnp.float32)
  linear = jnp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
  xyz = linear @ jnp.asarray(RGB_TO_XYZ.T / WHITE_D65, jnp.float32)
  delta = 6.0 / 29.0
  f = jnp.where(xyz > delta ** 3, jnp.cbrt(xyz), xyz / (3 * delta ** 2) + 4.0 / 29.0)
  return jnp.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                    200.0 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.lru_cache(maxsize=None)
def ab_bins() -> np.ndarray:
  """(Q, 2) float32 centres (multiples of BIN_SIZE) of the ab cells sRGB reaches, sorted."""
  levels = np.arange(0, 256, _GAMUT_STEP) / 255.0
  grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    ab = np.asarray(jax.jit(rgb_to_lab)(grid))[:, 1:]
  cells = np.unique(np.round(ab / BIN_SIZE).astype(np.int32), axis=0)
  return (cells * BIN_SIZE).astype(np.float32)


def squared_distances(ab, bins):
  """(..., 2), (Q, 2) -> (..., Q) squared Euclidean distances in ab."""
  return jnp.sum((ab[..., None, :] - bins) ** 2, axis=-1)


def soft_encode(ab, bins, neighbours: int = 5, sigma: float = 5.0):
  """(..., 2) ab -> (..., Q) soft targets: Gaussian weights on the `neighbours` nearest bins,
  summing to 1 (the others 0)."""
  d2 = squared_distances(ab, bins)
  neg_d2, nearest = jax.lax.top_k(-d2, neighbours)
  weights = jax.nn.softmax(neg_d2 / (2 * sigma ** 2), axis=-1)
  one_hot = jax.nn.one_hot(nearest, bins.shape[0], dtype=jnp.float32)
  return jnp.einsum("...k,...kq->...q", weights, one_hot)


def rebalance_weights(prior, bins, lam: float = 0.5, sigma: float = 5.0):
  """(Q,) bin prior (non-negative, summing to 1) -> (Q,) class-rebalancing weights:
  w ~ ((1 - lam) p~ + lam / Q)^-1 normalised to sum_q p~_q w_q = 1, p~ = the prior convolved
  with a Gaussian kernel of `sigma` over the bin centres, renormalised to sum 1."""
  kernel = jnp.exp(-squared_distances(bins, bins) / (2 * sigma ** 2))
  smoothed = kernel @ prior
  smoothed /= smoothed.sum()
  weights = 1.0 / ((1.0 - lam) * smoothed + lam / bins.shape[0])
  return weights / jnp.sum(smoothed * weights)
