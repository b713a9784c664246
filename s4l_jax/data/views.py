"""The view registry: S4L / SimCLR augmentations as named JAX ops, run on the device.

A view is one crop op (`CROP_OPS`: inception_crop, pad_crop, central_crop, simclr_crop,
central_crop_875), taking `crops` crops of each uint8 image (B, H, W, C), then ops on the crops
in [0, 1] (`OPS`: flip, hsv_noise, color_jitter, grey, blur, simclr_augment, color_drop, and
the copy-making rotate4 (4 copies), jigsaw_tiles (the 9 tiles of a jittered 3x3 grid, smaller
than the crop: `grid_geometry`) and patch_pair (the centre tile and a random neighbour)); the
result is float32 in [-1, 1] (`to_pm1`). Views are declared once, in `NAMED_VIEWS` (train,
rotate4, exemplar8, jigsaw, relative_position, simclr2, simclr_train, eval, simclr_eval; all but
the eval views take their crop op from `input.crop`), or written in a config as a composition that
names its crop op first, e.g. `"inception_crop|flip|hsv_noise"`. The tf.data path
(`tf_views.py`) only decodes and crops on the host; `make_view_fn(..., host_cropped=True)`
applies the same ops to its crops. All functions are jit-able, vectorised over the batch and
deterministic given `rng`. This module must not import TensorFlow.

In a composition, `op@k` applies a random op to crop k only of each image's `*N` crops, e.g.
FixMatch's weak (copy 0) and strong (copy 1) views `"central_crop*2|flip|shift|randaugment@1|
cutout@1"` (`randaugment`, `cutout`: `randaugment.py`). `shift` reflect-pads by 12.5 % of the
side (`randaugment.shift_pad`) and takes a random window; `pad_crop` pads by `PAD` = 4 px at
every size (12.5 % at 32 px, 25 % at digits' 16), kept so that results do not move.

Crop sampling follows TF `sample_distorted_bounding_box` (kernel
`GenerateRandomCrop` + `SatisfiesOverlapConstraints`): aspect ratio uniform,
integer height uniform between the heights implied by the area bounds, integer
offsets uniform in [0, size - crop), first valid attempt wins, whole image as
fallback. Crops are resized without antialiasing (`RESIZES`, the view's `resize`):
half-pixel-centre bilinear (S4L; TF2 `tf.image.resize(method="bilinear")`) or Keys bicubic
(SimCLR; TF2 `tf.image.resize(method="bicubic")`).
"""
import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from s4l_jax.data import randaugment

S4L_AREA = (0.05, 1.0)
S4L_ASPECT = (0.75, 1.33)
SIMCLR_AREA = (0.08, 1.0)
SIMCLR_ASPECT = (3 / 4, 4 / 3)
MIN_COVERED = 0.1
MAX_ATTEMPTS = 100
SIMCLR_CENTRAL = 0.875  # SimCLR eval: side of the central crop / the short side
KEYS_A = -0.5  # Keys cubic kernel parameter of TF2 bicubic resizing
CUBIC_TABLE = 1024  # TF's bicubic kernel rounds tap offsets to 1 / CUBIC_TABLE pixel
PAD = 4
NUM_EXEMPLAR = 8

ViewFn = Callable[[jax.Array, dict[str, jax.Array]], dict[str, jax.Array]]


def inception_crop_boxes(rng, n, h, w, area_range=S4L_AREA,
                         aspect_range=S4L_ASPECT, min_covered=MIN_COVERED,
                         max_attempts=MAX_ATTEMPTS):
  """Samples `n` crop boxes with TF `sample_distorted_bounding_box` semantics.

  Args:
    rng: PRNG key.
    n: number of boxes.
    h, w: static image height and width in pixels.
    area_range: (min, max) crop area as a fraction of the image area.
    aspect_range: (min, max) width / height, drawn uniformly.
    min_covered: minimum fraction of the image the crop must cover.
    max_attempts: attempts per box (vectorised); fallback is the whole image.

  Returns:
    int32 (n, 4) boxes `[y, x, height, width]` in pixels.
  """
  k_asp, k_h, k_y, k_x = jax.random.split(rng, 4)
  shape = (n, max_attempts)
  aspect = jax.random.uniform(k_asp, shape, jnp.float32, *aspect_range)
  min_area = jnp.float32(area_range[0] * w * h)
  max_area = jnp.float32(area_range[1] * w * h)
  lrint = lambda v: jnp.round(v).astype(jnp.int32)  # Half to even, as lrintf.
  height = lrint(jnp.sqrt(min_area / aspect))
  max_height = lrint(jnp.sqrt(max_area / aspect))
  # Largest max_height with round(max_height * aspect) <= w.
  too_wide = lrint(max_height * aspect) > w
  capped = ((w + 0.5 - 1e-7) / aspect).astype(jnp.int32)
  capped = jnp.where(lrint(capped * aspect) > w, capped - 1, capped)
  max_height = jnp.minimum(jnp.where(too_wide, capped, max_height), h)
  height = jnp.minimum(height, max_height)
  height += jax.random.randint(k_h, shape, 0, max_height - height + 1)
  width = lrint(height * aspect)
  area = (width * height).astype(jnp.float32)
  # Rounding fix-ups from the TF kernel: grow, then shrink, by one row.
  grow = area < min_area
  height = jnp.where(grow, height + 1, height)
  width = lrint(height * aspect)
  area = (width * height).astype(jnp.float32)
  shrink = ~grow & (area > max_area)
  height = jnp.where(shrink, height - 1, height)
  width = lrint(height * aspect)
  area = (width * height).astype(jnp.float32)
  valid = ((area >= min_area) & (area <= max_area) & (width <= w)
           & (height <= h) & (width > 0) & (height > 0)
           & (area >= min_covered * h * w))
  # TF's Uniform(k) draws from [0, k), so the last offset is never used.
  y = jnp.floor(jax.random.uniform(k_y, shape) * (h - height)).astype(jnp.int32)
  x = jnp.floor(jax.random.uniform(k_x, shape) * (w - width)).astype(jnp.int32)
  boxes = jnp.stack([y, x, height, width], axis=-1)  # (n, attempts, 4)
  first = jnp.argmax(valid, axis=1)
  chosen = jnp.take_along_axis(boxes, first[:, None, None], axis=1)[:, 0]
  whole = jnp.array([0, 0, h, w], jnp.int32)
  return jnp.where(valid.any(axis=1, keepdims=True), chosen, whole)


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


@dataclasses.dataclass(frozen=True)
class Resize:
  """A crop-and-resize `fn(image (H, W, C), box [y, x, h, w], size) -> (S, S, C)` float32, and
  `canvas_fn`, the same for the tf.data canvas (`_host_crops`: large uint8 images)."""
  fn: Callable
  canvas_fn: Callable


RESIZES = {
    "bilinear": Resize(crop_and_resize, gather_crop_and_resize),
    "bicubic": Resize(bicubic_crop_and_resize, bicubic_crop_and_resize),
}


def pad_crop(rng, image, size, pad=PAD):
  """Reflect-pads float (H, W, C) by `pad` and takes a random size x size crop."""
  padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  hp, wp = padded.shape[:2]
  off = jax.random.randint(rng, (2,), 0, jnp.array([hp - size, wp - size]) + 1)
  return jax.lax.dynamic_slice(padded, (off[0], off[1], 0),
                               (size, size, image.shape[2]))


def random_flip(rng, image):
  """Horizontal flip of (H, W, C) with probability 0.5."""
  return jnp.where(jax.random.bernoulli(rng), image[:, ::-1], image)


def rotate4(images):
  """(B, S, S, C) -> (B, 4, S, S, C): k counter-clockwise quarter turns, k=0..3."""
  return jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in range(4)],
                   axis=1)


GRID = 3  # jigsaw / relative position: a 3x3 grid of cells
NUM_TILES = GRID * GRID
TILE_FRACTION = (64, 75)  # tile side / cell side of Noroozi & Favaro (64 px tiles, 75 px cells)
CENTRE = NUM_TILES // 2
NEIGHBOURS = tuple(c for c in range(NUM_TILES) if c != CENTRE)  # position label -> cell
DROP_NOISE = 0.01  # colour dropping: noise std / the kept channel's std (Doersch et al.)


def grid_geometry(size: int) -> tuple[int, int, int]:
  """(cell, tile, origin) in pixels of the 3x3 grid on a size x size crop: cells of side
  size // 3 from `origin` (the grid centred, offsets rounded down), tiles of side
  cell * 64 // 75 (>= 1): 16 px -> 5, 4; 32 px -> 10, 8; 225 px -> 75, 64."""
  cell = size // GRID
  return cell, max(1, cell * TILE_FRACTION[0] // TILE_FRACTION[1]), (size - GRID * cell) // 2


def tile_corners(rng, size: int):
  """int32 (9, 2) top-left (y, x) of each cell's tile, cells in row-major order: the cell's
  corner plus a random jitter in [0, cell - tile] per tile and axis (the gap between tiles)."""
  cell, tile, origin = grid_geometry(size)
  jitter = jax.random.randint(rng, (NUM_TILES, 2), 0, cell - tile + 1)
  cells = jnp.stack(jnp.divmod(jnp.arange(NUM_TILES), GRID), axis=-1)
  return (origin + cells * cell + jitter).astype(jnp.int32)


def grid_tiles(rng, image):
  """The 9 jittered tiles of (S, S, C), in grid (row-major) order: (9, t, t, C)."""
  size, channels = image.shape[0], image.shape[2]
  tile = grid_geometry(size)[1]
  cut = lambda yx: jax.lax.dynamic_slice(image, (yx[0], yx[1], 0), (tile, tile, channels))
  return jax.vmap(cut)(tile_corners(rng, size))


def patch_pair(rng, image):
  """Relative position (Doersch et al. 2015): the centre tile and one of its 8 neighbours,
  drawn uniformly, of the jittered grid: ((2, t, t, C), position label in [0, 8))."""
  k_pos, k_tiles = jax.random.split(rng)
  position = jax.random.randint(k_pos, (), 0, len(NEIGHBOURS))
  tiles = grid_tiles(k_tiles, image)
  return jnp.stack([tiles[CENTRE], tiles[jnp.asarray(NEIGHBOURS)[position]]]), position


def color_drop(rng, image):
  """Doersch et al.'s guard against chromatic aberration on (s, s, C): keep one random
  channel, replace the others by Gaussian noise of DROP_NOISE x its std around its mean."""
  k_keep, k_noise = jax.random.split(rng)
  keep = jax.random.randint(k_keep, (), 0, image.shape[-1])
  kept = jnp.take(image, keep, axis=-1)
  noise = kept.mean() + DROP_NOISE * kept.std() * jax.random.normal(k_noise, image.shape)
  return jnp.where(jnp.arange(image.shape[-1]) == keep, image, noise)


def rgb_to_hsv(rgb):
  """RGB in [0, 1] (..., 3) -> HSV in [0, 1] (..., 3), as `colorsys`."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = jnp.max(rgb, axis=-1)
  c = v - jnp.min(rgb, axis=-1)
  safe_c = jnp.where(c > 0, c, 1.0)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
  h = jnp.where(v == r, (g - b) / safe_c,
                jnp.where(v == g, (b - r) / safe_c + 2, (r - g) / safe_c + 4))
  h = jnp.where(c > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv):
  """HSV in [0, 1] (..., 3) -> RGB in [0, 1] (..., 3), as `colorsys`."""
  h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h * 6.0, 6.0)
  return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def apply_hsv_noise(image, hue_delta, gamma_log2, scale_log2, shift):
  """S4L `hsvnoise` with given draws on RGB (..., 3) in [0, 1].

  Args:
    image: float RGB in [0, 1].
    hue_delta: scalar hue shift (turns).
    gamma_log2, scale_log2, shift: (2,) parameters for (S, V):
      `c <- c ** 2**gamma_log2 * 2**scale_log2 + shift`.

  Returns:
    RGB in [0, 1], same shape as `image`.
  """
  hsv = rgb_to_hsv(image)
  h = jnp.mod(hsv[..., 0] + hue_delta, 1.0)
  sv = hsv[..., 1:] ** jnp.exp2(gamma_log2) * jnp.exp2(scale_log2) + shift
  hsv = jnp.clip(jnp.concatenate([h[..., None], sv], axis=-1), 0.0, 1.0)
  return hsv_to_rgb(hsv)


def hsv_noise(rng, image):
  """S4L `hsvnoise` on RGB in [0, 1]: one draw of all parameters per call."""
  k_h, k_g, k_s, k_b = jax.random.split(rng, 4)
  return apply_hsv_noise(
      image,
      hue_delta=jax.random.uniform(k_h, (), minval=-0.1, maxval=0.1),
      gamma_log2=jax.random.uniform(k_g, (2,), minval=-2.0, maxval=2.0),
      scale_log2=jax.random.uniform(k_s, (2,), minval=-0.5, maxval=0.5),
      shift=jax.random.uniform(k_b, (2,), minval=-0.1, maxval=0.1))


def _grey(image):
  """Luma of RGB (..., 3) as in `tf.image.rgb_to_grayscale`, shape (..., 1)."""
  return image @ jnp.array([0.2989, 0.5870, 0.1140])[:, None]


def adjust_brightness(image, factor):
  """SimCLRv2 brightness (multiplicative): `image * factor`."""
  return image * factor


def adjust_contrast(image, factor):
  """`tf.image.adjust_contrast` on (H, W, C): scale around the per-channel mean over H, W."""
  mean = image.mean(axis=(0, 1))
  return (image - mean) * factor + mean


def adjust_saturation(image, factor):
  """`tf.image.adjust_saturation` on RGB (..., 3) in [0, 1]: S <- clip(S * factor, 0, 1) in
  HSV."""
  hsv = rgb_to_hsv(image)
  return hsv_to_rgb(hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0)))


def adjust_hue(image, delta):
  """`tf.image.adjust_hue` on RGB (..., 3) in [0, 1]: H <- (H + delta) mod 1 (turns)."""
  hsv = rgb_to_hsv(image)
  return hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0)))


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_color_jitter(image, factors, order):
  """SimCLR colour jitter with given draws on (H, W, 3) in [0, 1].

  Args:
    image: float RGB in [0, 1].
    factors: (4,) brightness factor, contrast factor, saturation factor, hue delta.
    order: int (4,), a permutation of `JITTER_OPS` indices, applied first to last.

  Returns:
    RGB in [0, 1], clipped after each op.
  """
  ops = [lambda x, op=op, i=i: op(x, factors[i]) for i, op in enumerate(JITTER_OPS)]
  step = lambda j, x: jnp.clip(jax.lax.switch(order[j], ops, x), 0.0, 1.0)
  return jax.lax.fori_loop(0, len(ops), step, image)


def color_jitter(rng, image, strength=1.0):
  """SimCLR colour jitter on (H, W, 3) in [0, 1]: brightness U(max(0, 1-0.8s), 1+0.8s),
  contrast and saturation U(1-0.8s, 1+0.8s), hue delta U(-0.2s, 0.2s), in random order."""
  k_perm, k_b, k_c, k_s, k_h = jax.random.split(rng, 5)
  s8 = 0.8 * strength
  factors = jnp.stack([
      jax.random.uniform(k_b, (), minval=max(0.0, 1 - s8), maxval=1 + s8),
      jax.random.uniform(k_c, (), minval=1 - s8, maxval=1 + s8),
      jax.random.uniform(k_s, (), minval=1 - s8, maxval=1 + s8),
      jax.random.uniform(k_h, (), minval=-0.2 * strength, maxval=0.2 * strength)])
  return apply_color_jitter(image, factors, jax.random.permutation(k_perm, len(JITTER_OPS)))


def apply_gaussian_blur(image, sigma):
  """SimCLR blur of (S, S, C) with a given `sigma` (px): kernel size S // 10 rounded up to odd
  (radius S // 20: 23 taps at S = 224), normalised, separable, zero ('SAME') padding."""
  size = image.shape[0]
  radius = size // 10 // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-taps**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  d = jnp.arange(size)[:, None] - jnp.arange(size)[None, :]
  mat = jnp.where(jnp.abs(d) <= radius, kernel[jnp.clip(d + radius, 0,
                                                        2 * radius)], 0.0)
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("ih,hwc,jw->ijc", mat, image, mat, precision=hi)


def gaussian_blur(rng, image):
  """`apply_gaussian_blur` of (S, S, C) in [0, 1] with sigma ~ U(0.1, 2), drawn per image
  (SimCLR draws one per batch and view)."""
  return apply_gaussian_blur(image, jax.random.uniform(rng, (), minval=0.1, maxval=2.0))


def central_crop_resize(images, size, resize=crop_and_resize):
  """Deterministic eval crop of (B, H, W, C): central square of the short side (offsets
  rounded down), `resize`d to size x size; identity when H = W = size."""
  _, h, w, _ = images.shape
  if h == w == size:
    return images
  side = min(h, w)
  box = jnp.array([(h - side) // 2, (w - side) // 2, side, side])
  return jax.vmap(lambda im: resize(im, box, size))(images)


def simclr_central_box(h, w, fraction=SIMCLR_CENTRAL):
  """SimCLR's `center_crop` box (`data_util._compute_crop_shape` at aspect 1): a square of
  side rint(fraction * min(h, w)) at offsets ((h - side) + 1) // 2, likewise for w.

  Returns:
    Python ints (y, x, side, side).
  """
  side = round(fraction * min(h, w))  # Python rounds half to even, as tf.rint.
  return ((h - side) + 1) // 2, ((w - side) + 1) // 2, side, side


def random_color_jitter(k_jitter, k_coin, image, p=0.8):
  """SimCLR `color_jitter` (strength 1) with probability `p`, on (S, S, 3) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p), color_jitter(k_jitter, image), image)


def random_grey(k_coin, image, p=0.2):
  """Greyscale (3 equal channels) with probability `p`, on (S, S, 3) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p),
                   jnp.broadcast_to(_grey(image), image.shape), image)


def random_blur(k_blur, k_coin, image, p=0.5):
  """SimCLR `gaussian_blur` with probability `p`, on (S, S, C) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p), gaussian_blur(k_blur, image), image)


def simclr_augment(rng, image):
  """SimCLR's chain after the crop on (S, S, 3) in [0, 1]: flip, colour jitter p=0.8,
  grey p=0.2, blur p=0.5, clip; the six keys of one split of `rng`."""
  k_f, k_cj, k_pcj, k_g, k_bl, k_pbl = jax.random.split(rng, 6)
  x = random_flip(k_f, image)
  x = random_color_jitter(k_cj, k_pcj, x)
  x = random_grey(k_g, x)
  x = random_blur(k_bl, k_pbl, x)
  return jnp.clip(x, 0.0, 1.0)


def to_pm1(x, max_value: float = 1.0):
  """The model's input scaling: [0, max_value] -> [-1, 1], `x * (2 / max_value) - 1`, float32
  (uint8 images: `max_value=255`). Not clipped."""
  return jnp.asarray(x, jnp.float32) * (2.0 / max_value) - 1.0


def _to_unit(images):
  """uint8 -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


# ---- Crop ops: float (B, H, W, C) in [0, 1] -> (B * view.crops, S, S, C) ----

def _repeat(images, k):
  """(B, ...) -> (B * k, ...), each image k times in a row."""
  return jnp.repeat(images, k, axis=0) if k > 1 else images


def _inception_crop(rng, images, size, view):
  """TF-style random box per crop (`view.area_range`, `view.aspect_range`), `view.resize`."""
  b, h, w, _ = images.shape
  boxes = inception_crop_boxes(rng, b * view.crops, h, w, view.area_range, view.aspect_range)
  resize = RESIZES[view.resize].fn
  if view.crops == 1:
    return jax.vmap(resize, in_axes=(0, 0, None))(images, boxes, size)
  # Several crops of one source without copying it: boxes (B, K, 4).
  crop_one = lambda im, bx: resize(im, bx, size)
  x = jax.vmap(jax.vmap(crop_one, in_axes=(None, 0)))(
      images, boxes.reshape(b, view.crops, 4))
  return x.reshape((b * view.crops,) + x.shape[2:])


def _pad_crop(rng, images, size, view):
  """Reflect pad by `PAD`, random size x size window per crop."""
  images = _repeat(images, view.crops)
  keys = jax.random.split(rng, images.shape[0])
  return jax.vmap(pad_crop, in_axes=(0, 0, None))(keys, images, size)


def _central_crop(rng, images, size, view):
  """Central square of the short side, `view.resize`d (identity at size x size)."""
  del rng
  return central_crop_resize(_repeat(images, view.crops), size, RESIZES[view.resize].fn)


def _central_crop_875(rng, images, size, view):
  """SimCLR's eval crop: `simclr_central_box` (87.5 % of the short side), `view.resize`d."""
  del rng
  box = jnp.array(simclr_central_box(*images.shape[1:3]))
  resize = RESIZES[view.resize].fn
  return jax.vmap(lambda im: resize(im, box, size))(_repeat(images, view.crops))


BICUBIC = {"resize": "bicubic"}
SIMCLR_CROP = {"area_range": SIMCLR_AREA, "aspect_range": SIMCLR_ASPECT, **BICUBIC}


@dataclasses.dataclass(frozen=True)
class Crop:
  """A crop op: `fn(rng, images (B, H, W, C), size, view) -> (B * view.crops, S, S, C)`.

  random: whether `fn` uses `rng` (None is passed otherwise).
  view_fields: the `View` fields of a composition that starts with this op.
  """
  fn: Callable
  random: bool = True
  view_fields: dict = dataclasses.field(default_factory=dict)


CROP_OPS = {
    "inception_crop": Crop(_inception_crop),
    "pad_crop": Crop(_pad_crop),
    "central_crop": Crop(_central_crop, random=False),
    "simclr_crop": Crop(_inception_crop, view_fields=SIMCLR_CROP),
    "central_crop_875": Crop(_central_crop_875, random=False, view_fields=BICUBIC),
}
# `input.crop` value -> the crop op of the named views (compositions name their own).
INPUT_CROPS = {"inception": "inception_crop", "pad_crop": "pad_crop", "none": "central_crop"}


# ---- Ops after the crop, on crops in [0, 1] ----

@dataclasses.dataclass(frozen=True)
class Op:
  """An op on crops in [0, 1].

  `copies == 1`: random, `fn(rng, crop (S, S, C)) -> (S, S, C)`, vmapped with one key per crop.
  `copies > 1`, `random=False`: `fn(crops (N, S, S, C)) -> (N, copies, S, S, C)`; copy j gets
  label j under the batch key `label`.
  `copies > 1`, `random=True`: `fn(rng, crop (S, S, C)) -> (copies, s, s, C)`, or with a
  `label` `-> ((copies, s, s, C), int32 scalar)`, the label every copy of the crop gets;
  vmapped with one key per crop. Its copies may be smaller than the crop (tiles, s <= S).
  """
  fn: Callable
  copies: int = 1
  label: str | None = None
  random: bool = True


OPS = {
    "flip": Op(random_flip),
    "hsv_noise": Op(hsv_noise),
    "color_jitter": Op(lambda rng, x: random_color_jitter(*jax.random.split(rng), x)),
    "grey": Op(random_grey),
    "blur": Op(lambda rng, x: random_blur(*jax.random.split(rng), x)),
    "simclr_augment": Op(simclr_augment),
    "rotate4": Op(rotate4, copies=4, label="rotation", random=False),
    "jigsaw_tiles": Op(grid_tiles, copies=NUM_TILES),
    "patch_pair": Op(patch_pair, copies=2, label="position"),
    "color_drop": Op(color_drop),
    "shift": Op(lambda rng, x: pad_crop(rng, x, x.shape[0], randaugment.shift_pad(x.shape[0]))),
    "randaugment": Op(randaugment.randaugment),
    "cutout": Op(randaugment.cutout),
}
ONLY = "@"  # `op@k`: the op on crop k of each image only

INPUT_CROP = "<input.crop>"  # a named view's crop: the op `INPUT_CROPS[config.input.crop]`


@dataclasses.dataclass(frozen=True)
class View:
  """`crops` crops of each image by the crop op `crop`, then `ops` in order.

  area_range, aspect_range: the box ranges of `inception_crop` / `simclr_crop`.
  resize: how crop ops resize (`RESIZES`); pad_crop does not resize.
  """
  crop: str
  ops: tuple[str, ...] = ()
  crops: int = 1
  area_range: tuple[float, float] = S4L_AREA
  aspect_range: tuple[float, float] = S4L_ASPECT
  resize: str = "bilinear"


NAMED_VIEWS = {
    "train": View(INPUT_CROP, ("flip",)),
    "rotate4": View(INPUT_CROP, ("flip", "rotate4")),
    "exemplar8": View(INPUT_CROP, ("flip", "hsv_noise"), crops=NUM_EXEMPLAR),
    # Jigsaw (9 tiles in grid order) and relative position (centre + neighbour patch).
    "jigsaw": View(INPUT_CROP, ("flip", "jigsaw_tiles")),
    "relative_position": View(INPUT_CROP, ("flip", "patch_pair", "color_drop")),
    # SimCLRv2 pretraining (2 views), fine-tuning / distillation (crop + flip), eval.
    "simclr2": View(INPUT_CROP, ("simclr_augment",), crops=2, **SIMCLR_CROP),
    "simclr_train": View(INPUT_CROP, ("flip",), **SIMCLR_CROP),
    "eval": View("central_crop"),
    "simclr_eval": View("central_crop_875", **BICUBIC),
}


def _only(op: str) -> tuple[str, int | None]:
  """`"name@k"` -> ("name", k); `"name"` -> ("name", None) (k unchecked: `parse_view`)."""
  name, at, k = op.partition(ONLY)
  return name.strip(), (int(k) if at and k.strip().isdigit() else -1 if at else None)


def parse_view(view: str) -> View:
  """A named view (`NAMED_VIEWS`) or a composition `"crop_op[*N]|op[@k]|..."` (crop op first,
  with its `view_fields`, else S4L box ranges and bilinear resizing; `*N` takes N independent
  crops of each image, default 1; `op@k`, for a random op, applies it to crop k < N only), e.g.
  `"inception_crop|flip|hsv_noise"`, `"pad_crop*2|flip"` (two augmentations per image),
  `"pad_crop*2|flip|cutout@1"` or `"simclr_crop*2|simclr_augment"` (= simclr2 with inception).

  Raises ValueError naming an unknown or misplaced op and the valid names.
  """
  if view in NAMED_VIEWS:
    return NAMED_VIEWS[view]
  names = [name.strip() for name in view.split("|")]
  first, star, count = names[0].partition("*")
  names[0] = first.strip()
  ops = [_only(name) for name in names[1:]]
  for name in [names[0]] + [name for name, _ in ops]:
    if name not in CROP_OPS and name not in OPS:
      raise ValueError(
          f"view {view!r}: unknown op {name!r}; valid: a named view ({', '.join(NAMED_VIEWS)}) "
          f"or crop_op[*N]|op[@k]|... with crop ops ({', '.join(CROP_OPS)}) and ops "
          f"({', '.join(OPS)})")
  if names[0] not in CROP_OPS or any(name in CROP_OPS for name, _ in ops):
    raise ValueError(f"view {view!r}: exactly one crop op, first ({', '.join(CROP_OPS)})")
  crops = count.strip()
  if star and not (crops.isdigit() and int(crops) >= 1):
    raise ValueError(f"view {view!r}: the crop count after '*' must be an integer >= 1, "
                     f"got {crops!r}")
  crops = int(crops) if star else 1
  for op, (name, k) in zip(names[1:], ops):
    if k is not None and not (OPS[name].copies == 1 and 0 <= k < crops):
      raise ValueError(f"view {view!r}: {op!r} needs a random op and 0 <= k < {crops}, "
                       "the crop count after '*'")
  return View(names[0], tuple(name if k is None else f"{name}{ONLY}{k}" for name, k in ops),
              crops=crops, **CROP_OPS[names[0]].view_fields)


def resolve(view: str, crop: str) -> View:
  """`parse_view(view)` with a named view's crop op taken from `crop` (`input.crop`, one of
  `INPUT_CROPS`); ValueError for an unknown view, op or crop."""
  if crop not in INPUT_CROPS:
    raise ValueError(f"input.crop={crop!r} unknown; valid: {', '.join(INPUT_CROPS)}")
  spec = parse_view(view)
  if spec.crop == INPUT_CROP:
    spec = dataclasses.replace(spec, crop=INPUT_CROPS[crop])
  return spec


def copies(view: str) -> int:
  """Images the model sees per source image of `view` (train 1, rotate4 4, exemplar8 8,
  simclr2 2)."""
  spec = parse_view(view)
  return spec.crops * math.prod(OPS[_only(name)[0]].copies for name in spec.ops)


def make_view_fn(view: str, *, image_size: int, crop: str,
                 host_cropped: bool = False) -> ViewFn:
  """Returns `fn(rng, batch) -> dict` of the view `resolve(view, crop)`, float32 in [-1, 1].

  `batch["image"]` is uint8: source images (B, H, W, C), or with `host_cropped` the host's
  crops at S = image_size ((B, S, S, C), or (B, K, S, S, C) for K crops per image), or a
  canvas (B, H, W, C) with `batch["boxes"]` int32 (B, K, 4) [y, x, h, w] resized here
  (`tf_views.make_tf_crop_fn`). Output: {"image": (B, S, S, C), or (B, K', S, S, C) with K' =
  `copies(view)`}, plus int32 (B, K') labels of copy-making ops ("rotation" for rotate4).

  Keys: `rng` is split into one key for the crop and one per random op, in order (none when
  nothing is random: `rng` may be None); a random op splits its key into one per crop. With
  `host_cropped`, the crop key goes unused, so the ops after the crop draw the same numbers.
  """
  spec = resolve(view, crop)
  crop_op, ops = CROP_OPS[spec.crop], [(OPS[_only(n)[0]], _only(n)[1]) for n in spec.ops]
  num_random_ops = sum(op.random for op, _ in ops)
  is_random = crop_op.random or num_random_ops > 0

  def fn(rng, batch):
    keys = list(jax.random.split(rng, 1 + num_random_ops)) if is_random else [None]
    if host_cropped:
      x = _host_crops(batch, image_size, RESIZES[spec.resize].canvas_fn)
      b = x.shape[0]
      x = x.reshape((-1,) + x.shape[-3:])
    else:
      b = batch["image"].shape[0]
      x = crop_op.fn(keys[0], _to_unit(batch["image"]), image_size, spec)
    return _apply_ops(ops, iter(keys[1:]), x, b, spec.crops)

  return fn


def _host_crops(batch, size, resize):
  """The host's uint8 crops as float32 in [0, 1]; a canvas + boxes `resize`d to `size` here."""
  if "boxes" not in batch:
    return _to_unit(batch["image"])
  crop = functools.partial(resize, size=size)
  return jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(batch["image"], batch["boxes"]) / 255.0


def _apply_ops(ops, op_keys, x, b: int, crops: int) -> dict:
  """`ops` [(Op, only)] on x (b * crops, S, S, C) in [0, 1], one key of `op_keys` per random
  op; returns make_view_fn's dict (images in [-1, 1], labels of copy-making ops)."""
  labels = {}
  for op, only in ops:
    if only is not None:  # a random op on crop `only` of each image (and all its copies)
      y = x.reshape((b, crops, -1) + x.shape[1:])
      sel = y[:, only].reshape((-1,) + x.shape[1:])
      sel = jax.vmap(op.fn)(jax.random.split(next(op_keys), sel.shape[0]), sel)
      x = y.at[:, only].set(sel.reshape(y[:, only].shape)).reshape(x.shape)
      continue
    if op.copies == 1:
      x = jax.vmap(op.fn)(jax.random.split(next(op_keys), x.shape[0]), x)
      continue
    n, copy_label = x.shape[0], None
    if op.random:
      x = jax.vmap(op.fn)(jax.random.split(next(op_keys), n), x)
      x, copy_label = x if op.label else (x, None)
    else:
      x = op.fn(x)
    x = x.reshape((n * op.copies,) + x.shape[2:])
    labels = {k: jnp.repeat(v, op.copies) for k, v in labels.items()}
    if op.label:
      labels[op.label] = (jnp.tile(jnp.arange(op.copies, dtype=jnp.int32), n)
                          if copy_label is None else jnp.repeat(copy_label, op.copies))
  lead = (b, x.shape[0] // b) if x.shape[0] > b else (b,)
  out = {"image": jnp.clip(to_pm1(x), -1.0, 1.0).reshape(lead + x.shape[1:])}
  return out | {k: v.reshape(lead) for k, v in labels.items()}


def make_ops_fn(ops: str):
  """`fn(rng, images) -> dict`: the ops of a composition after its crop (e.g. "rotate4",
  "patch_pair|color_drop") on images float32 (B, S, S, C) in [-1, 1] (a view's output), with
  make_view_fn's output. For objectives that derive several tasks' inputs from one view
  (multi-task); `rng` is split into one key per random op (None: no random op)."""
  spec = parse_view(f"central_crop|{ops}")
  parsed = [(OPS[_only(n)[0]], _only(n)[1]) for n in spec.ops]
  num_random = sum(op.random for op, _ in parsed)

  def fn(rng, images):
    keys = iter(jax.random.split(rng, num_random)) if num_random else iter(())
    return _apply_ops(parsed, keys, (images + 1.0) / 2.0, images.shape[0], 1)
  return fn
