"""Crop-and-resize without antialiasing, as TF resizes: half-pixel-centre bilinear (S4L; TF2
`tf.image.resize(method="bilinear")`) and Keys bicubic (SimCLR; TF2
`tf.image.resize(method="bicubic")`), each as a matrix product and (bilinear) as gathers for
large images; `RESIZES` names them for views (`View.resize`). `area_matrix`: TF's area resize
(a box filter, antialiased), for the eval crop `resize_small_crop`.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

KEYS_A = -0.5  # Keys cubic kernel parameter of TF2 bicubic resizing
CUBIC_TABLE = 1024  # TF's bicubic kernel rounds tap offsets to 1 / CUBIC_TABLE pixel


def _interp_matrix(start, length, in_size, out_size):
  """(out_size, in_size) bilinear weights resampling [start, start+length)."""
  start = jnp.asarray(start, jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  src = start + (jnp.arange(out_size) + 0.5) * length / out_size - 0.5
  src = jnp.clip(src, start, start + length - 1)
  return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - jnp.arange(in_size)))


def crop_and_resize(image, box, size):
  """Bilinear crop of `box` [y, x, h, w] from float (H, W, C) to (size, size, C)."""
  h, w = image.shape[:2]
  wy = _interp_matrix(box[0], box[2], h, size)
  wx = _interp_matrix(box[1], box[3], w, size)
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("ih,hwc,jw->ijc", wy, image, wx, precision=hi)


def _bilinear_taps(start, length, out_size, in_size):
  """Gather twin of `_interp_matrix`: (lo, hi) int32 (out_size,) and hi's weight."""
  start = jnp.asarray(start, jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  src = start + (jnp.arange(out_size) + 0.5) * length / out_size - 0.5
  src = jnp.clip(src, start, start + length - 1)
  lo = jnp.floor(src)
  hi = jnp.minimum(lo + 1, in_size - 1).astype(jnp.int32)
  return lo.astype(jnp.int32), hi, src - lo


def gather_crop_and_resize(image, box, size):
  """`crop_and_resize` by 4-tap gathers (cheap on large images): (H, W, C) -> (S, S, C)."""
  h, w = image.shape[:2]
  y0, y1, fy = _bilinear_taps(box[0], box[2], size, h)
  x0, x1, fx = _bilinear_taps(box[1], box[3], size, w)
  rows = lambda y: image[y].astype(jnp.float32)
  mix = lambda r: r[:, x0] * (1 - fx)[:, None] + r[:, x1] * fx[:, None]
  return mix(rows(y0)) * (1 - fy)[:, None, None] + mix(rows(y1)) * fy[:, None, None]


def keys_cubic(x, a=KEYS_A):
  """Keys (1981) cubic convolution kernel at distance `x` (pixels); 0 for |x| >= 2."""
  x = jnp.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return jnp.where(x <= 1, near, jnp.where(x < 2, far, 0.0))


def _cubic_matrix(start, length, in_size, out_size):
  """(out_size, in_size) bicubic weights resampling [start, start+length), as TF's kernel.

  Half-pixel centres, 4 taps at floor(src) - 1 .. floor(src) + 2 with the offset rounded to
  1 / CUBIC_TABLE pixel (TF reads a table); taps outside the segment get weight 0 and the rest
  are renormalised to sum 1 (TF2 `resize_bicubic(half_pixel_centers=True)`).
  """
  length = jnp.asarray(length, jnp.int32)
  scale = length.astype(jnp.float32) / out_size
  src = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale - 0.5
  base = jnp.floor(src)
  frac = jnp.round((src - base) * CUBIC_TABLE) / CUBIC_TABLE  # Half to even, as lrintf.
  offsets = jnp.arange(-1, 3)
  taps = base.astype(jnp.int32)[:, None] + offsets  # (out, 4), relative to `start`
  weights = keys_cubic(frac[:, None] - offsets) * ((taps >= 0) & (taps < length))
  weights /= weights.sum(axis=1, keepdims=True)
  cols = jnp.asarray(start, jnp.int32) + taps
  return jnp.sum(jnp.where(cols[..., None] == jnp.arange(in_size), weights[..., None], 0.0),
                 axis=1)


def bicubic_crop_and_resize(image, box, size):
  """Bicubic crop of `box` [y, x, h, w] from (H, W, C) to float32 (size, size, C).

  TF2 `tf.image.resize(crop, (size, size), method="bicubic")` (Keys a=-0.5, no antialias),
  as SimCLR's TF2 code; its TF1 code calls the legacy `tf.image.resize_bicubic` (a=-0.75,
  no half-pixel centres), which differs slightly. Not clipped (the kernel overshoots).
  """
  h, w = image.shape[:2]
  wy = _cubic_matrix(box[0], box[2], h, size)
  wx = _cubic_matrix(box[1], box[3], w, size)
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("ih,hwc,jw->ijc", wy, image.astype(jnp.float32), wx, precision=hi)


def area_matrix(in_size: int, out_size: int, first: int, count: int) -> np.ndarray:
  """float32 (count, in_size): rows first .. first + count - 1 of TF's area resize of a side
  `in_size` -> `out_size` (`tf.image.resize(method="area")`, TF's `resize_area` kernel):
  output pixel y averages the input span [y s, (y + 1) s), s = in_size / out_size, each input
  pixel weighted by its overlap with the span (a box filter; s < 1 upsamples). Static sizes
  (Python ints): a constant of the traced program.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  y = np.arange(first, first + count, dtype=np.float32)[:, None]
  lo, hi = y * scale, (y + 1) * scale  # float32, as the kernel computes them
  pixel = np.arange(in_size, dtype=np.float32)[None, :]
  overlap = np.clip(np.minimum(pixel + 1, hi) - np.maximum(pixel, lo), 0, None)
  return (overlap / scale).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Resize:
  """A crop-and-resize `fn(image (H, W, C), box [y, x, h, w], size) -> (S, S, C)` float32, and
  `canvas_fn`, the same for the tf.data canvas (`views.make_view_fn`: large uint8 images)."""
  fn: Callable
  canvas_fn: Callable


RESIZES = {
    "bilinear": Resize(crop_and_resize, gather_crop_and_resize),
    "bicubic": Resize(bicubic_crop_and_resize, bicubic_crop_and_resize),
}


