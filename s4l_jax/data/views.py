"""View recipes (S4L / SimCLR augmentations) in pure JAX for in-memory data.

Every view maps `(rng, images)` with `images` uint8 (B, H, W, C) to a dict of
float32 arrays in [-1, 1] (`x / 255 * 2 - 1`). All functions are jit-able,
vectorised over the batch and deterministic given `rng`. This module must not
import TensorFlow (see `tf_views.py` for the tf.data twin).

Crop sampling follows TF `sample_distorted_bounding_box` (kernel
`GenerateRandomCrop` + `SatisfiesOverlapConstraints`): aspect ratio uniform,
integer height uniform between the heights implied by the area bounds, integer
offsets uniform in [0, size - crop), first valid attempt wins, whole image as
fallback. Crops are resized with half-pixel-centre bilinear interpolation
without antialiasing (TF2 `tf.image.resize(method="bilinear")`).
"""
import functools
from typing import Callable

import jax
import jax.numpy as jnp

VIEWS = ("train", "rotate4", "exemplar8", "simclr2", "eval")
CROPS = ("inception", "pad_crop", "none")

S4L_AREA = (0.05, 1.0)
S4L_ASPECT = (0.75, 1.33)
SIMCLR_AREA = (0.08, 1.0)
SIMCLR_ASPECT = (3 / 4, 4 / 3)
MIN_COVERED = 0.1
MAX_ATTEMPTS = 100
PAD = 4
NUM_EXEMPLAR = 8

ViewFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


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


def color_jitter(rng, image, strength=1.0):
  """SimCLR colour jitter on RGB [0, 1]: 4 ops in random order, clip each."""
  k_perm, k_b, k_c, k_s, k_h = jax.random.split(rng, 5)
  s8 = 0.8 * strength
  fb = jax.random.uniform(k_b, (), minval=max(0.0, 1 - s8), maxval=1 + s8)
  fc = jax.random.uniform(k_c, (), minval=1 - s8, maxval=1 + s8)
  fs = jax.random.uniform(k_s, (), minval=1 - s8, maxval=1 + s8)
  dh = jax.random.uniform(k_h, (), minval=-0.2 * strength,
                          maxval=0.2 * strength)

  def hue(x):
    hsv = rgb_to_hsv(x)
    return hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + dh, 1.0)))

  ops = (lambda x: x * fb,
         lambda x: (x - x.mean(axis=(0, 1))) * fc + x.mean(axis=(0, 1)),
         lambda x: _grey(x) + (x - _grey(x)) * fs,
         hue)
  perm = jax.random.permutation(k_perm, 4)
  step = lambda j, x: jnp.clip(jax.lax.switch(perm[j], ops, x), 0.0, 1.0)
  return jax.lax.fori_loop(0, 4, step, image)


def gaussian_blur(rng, image):
  """SimCLR blur of (S, S, C) in [0, 1]: sigma ~ U(0.1, 2), kernel S // 10.

  Separable, zero ('SAME') padding, as in SimCLR. Sigma is drawn per image
  (SimCLR draws one per batch and view).
  """
  size = image.shape[0]
  radius = size // 10 // 2
  sigma = jax.random.uniform(rng, (), minval=0.1, maxval=2.0)
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-taps**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  d = jnp.arange(size)[:, None] - jnp.arange(size)[None, :]
  mat = jnp.where(jnp.abs(d) <= radius, kernel[jnp.clip(d + radius, 0,
                                                        2 * radius)], 0.0)
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("ih,hwc,jw->ijc", mat, image, mat, precision=hi)


def _simclr_single(rng, x):
  """SimCLR colour/blur chain of a cropped (S, S, 3) in [0, 1] -> [0, 1]."""
  k_f, k_cj, k_pcj, k_g, k_bl, k_pbl = jax.random.split(rng, 6)
  x = random_flip(k_f, x)
  x = jnp.where(jax.random.bernoulli(k_pcj, 0.8), color_jitter(k_cj, x), x)
  x = jnp.where(jax.random.bernoulli(k_g, 0.2), jnp.broadcast_to(
      _grey(x), x.shape), x)
  x = jnp.where(jax.random.bernoulli(k_pbl, 0.5), gaussian_blur(k_bl, x), x)
  return jnp.clip(x, 0.0, 1.0)


def _to_unit(images):
  return images.astype(jnp.float32) / 255.0


def _to_pm1(unit):
  return jnp.clip(unit * 2.0 - 1.0, -1.0, 1.0)


def central_crop_resize(images, size):
  """Deterministic eval crop: central square of the short side, resize."""
  _, h, w, _ = images.shape
  if h == w == size:
    return images
  side = min(h, w)
  box = jnp.array([(h - side) // 2, (w - side) // 2, side, side])
  return jax.vmap(lambda im: crop_and_resize(im, box, size))(images)


def _crop_batch(rng, images, size, crop, area_range=S4L_AREA,
                aspect_range=S4L_ASPECT):
  """Crops float (N, H, W, C) to (N, size, size, C), one random box each."""
  n, h, w, _ = images.shape
  if crop == "inception":
    boxes = inception_crop_boxes(rng, n, h, w, area_range, aspect_range)
    return jax.vmap(crop_and_resize, in_axes=(0, 0, None))(images, boxes, size)
  if crop == "pad_crop":
    keys = jax.random.split(rng, n)
    return jax.vmap(pad_crop, in_axes=(0, 0, None))(keys, images, size)
  return central_crop_resize(images, size)  # crop == "none".


def _flip_batch(rng, images):
  return jax.vmap(random_flip)(jax.random.split(rng, images.shape[0]), images)


def _train(rng, images, size, crop):
  k_crop, k_flip = jax.random.split(rng)
  return _flip_batch(k_flip, _crop_batch(k_crop, _to_unit(images), size, crop))


def _exemplar8(rng, images, size, crop):
  """8 crops of each decoded source (no copies): (B, 8, S, S, C) in [0, 1]."""
  b, h, w, _ = images.shape
  k_crop, k_flip, k_hsv = jax.random.split(rng, 3)
  src = _to_unit(images)
  if crop == "inception":
    boxes = inception_crop_boxes(k_crop, b * NUM_EXEMPLAR, h, w)
    crop_one = lambda im, bx: crop_and_resize(im, bx, size)
    x = jax.vmap(jax.vmap(crop_one, in_axes=(None, 0)))(
        src, boxes.reshape(b, NUM_EXEMPLAR, 4))
    x = x.reshape((b * NUM_EXEMPLAR,) + x.shape[2:])
  else:
    x = _crop_batch(k_crop, jnp.repeat(src, NUM_EXEMPLAR, axis=0), size, crop)
  x = _flip_batch(k_flip, x)
  x = jax.vmap(hsv_noise)(jax.random.split(k_hsv, x.shape[0]), x)
  return x.reshape((b, NUM_EXEMPLAR) + x.shape[1:])


def _simclr2(rng, images, size, crop):
  b = images.shape[0]
  k_crop, k_views = jax.random.split(rng)
  src = jnp.repeat(_to_unit(images), 2, axis=0)
  x = _crop_batch(k_crop, src, size, crop, SIMCLR_AREA, SIMCLR_ASPECT)
  x = jax.vmap(_simclr_single)(jax.random.split(k_views, 2 * b), x)
  return x.reshape((b, 2) + x.shape[1:])


def make_view_fn(view: str, *, image_size: int, crop: str) -> ViewFn:
  """Returns `fn(rng, images uint8 (B, H, W, C)) -> dict` of float32 in [-1, 1].

  Views:
    train:     crop, flip -> {"image": (B, S, S, C)}.
    rotate4:   train view, then rot90 k=0..3 -> {"image": (B, 4, S, S, C),
               "rotation": int32 (B, 4) = [0, 1, 2, 3]}.
    exemplar8: 8 independent crops + flip + HSV noise of each image ->
               {"image": (B, 8, S, S, C)}.
    simclr2:   2 SimCLR views (crop area (0.08, 1), flip, colour jitter 1.0
               p=0.8, grey p=0.2, blur p=0.5) -> {"image": (B, 2, S, S, C)};
               mapped to [-1, 1] like the other views (SimCLR uses [0, 1]);
               bilinear rather than bicubic resize; blur sigma drawn per
               image (SimCLR: per batch).
    eval:      deterministic central square crop + bilinear resize ->
               {"image": (B, S, S, C)} (the tf.data twin resizes the short
               side to S*256/224 first, as for ImageNet).

  Args:
    view: one of `VIEWS`.
    image_size: output side S in pixels.
    crop: one of `CROPS` ("inception": TF box sampler + bilinear resize;
      "pad_crop": reflect pad 4 + random S crop; "none": no random crop, only
      a central square crop + resize when the input is not S x S). Ignored
      by "eval".
  """
  if view not in VIEWS:
    raise ValueError(f"Unknown view {view!r}; valid: {VIEWS}.")
  if crop not in CROPS:
    raise ValueError(f"Unknown crop {crop!r}; valid: {CROPS}.")

  def fn(rng, images):
    if view == "eval":
      return {"image": _to_pm1(central_crop_resize(_to_unit(images),
                                                   image_size))}
    if view == "train":
      return {"image": _to_pm1(_train(rng, images, image_size, crop))}
    if view == "rotate4":
      x = rotate4(_train(rng, images, image_size, crop))
      rot = jnp.tile(jnp.arange(4, dtype=jnp.int32), (images.shape[0], 1))
      return {"image": _to_pm1(x), "rotation": rot}
    if view == "exemplar8":
      return {"image": _to_pm1(_exemplar8(rng, images, image_size, crop))}
    return {"image": _to_pm1(_simclr2(rng, images, image_size, crop))}

  return fn


def make_finish_fn(view: str, image_size: int) -> Callable[[jax.Array, dict], dict]:
  """Returns `fn(rng, batch) -> dict` of float32 in [-1, 1]: a view's device half.

  Pairs with `tf_views.make_tf_view_fn(..., device_finish=True)`, which decodes and crops
  on the host and emits uint8; the per-pixel work that multiplies the data (rotations,
  exemplar resizes, per-crop flips, HSV noise) runs here, inside the step. `batch["image"]`:
    train, eval: (B, S, S, C) -> {"image": (B, S, S, C)} (scaling only).
    rotate4:     flipped train crop (B, S, S, C) -> {"image": (B, 4, S, S, C),
                 "rotation": int32 (B, 4) = [0, 1, 2, 3]}.
    exemplar8:   (B, 8, S, S, C) crops, or a canvas (B, H, W, C) with `batch["boxes"]`
                 int32 (B, 8, 4) [y, x, h, w] to resize to S here -> per-crop flip + HSV
                 noise -> {"image": (B, 8, S, S, C)}.
    simclr2:     (B, 2, S, S, C) crops -> per-crop flip, colour jitter, grey, blur.
  """
  if view not in VIEWS:
    raise ValueError(f"Unknown view {view!r}; valid: {VIEWS}.")

  def fn(rng, batch):
    if "boxes" in batch:
      crop = functools.partial(gather_crop_and_resize, size=image_size)
      x = jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(batch["image"], batch["boxes"]) / 255.0
    else:
      x = _to_unit(batch["image"])
    if view in ("train", "eval"):
      return {"image": _to_pm1(x)}
    if view == "rotate4":
      rot = jnp.tile(jnp.arange(4, dtype=jnp.int32), (x.shape[0], 1))
      return {"image": _to_pm1(rotate4(x)), "rotation": rot}
    flat = x.reshape((-1,) + x.shape[2:])
    if view == "exemplar8":
      k_flip, k_hsv = jax.random.split(rng)
      flat = _flip_batch(k_flip, flat)
      flat = jax.vmap(hsv_noise)(jax.random.split(k_hsv, flat.shape[0]), flat)
    else:
      flat = jax.vmap(_simclr_single)(jax.random.split(rng, flat.shape[0]), flat)
    return {"image": _to_pm1(flat.reshape(x.shape))}

  return fn


@functools.partial(jax.jit, static_argnames=("view", "image_size", "crop"))
def apply_view(rng, images, *, view, image_size, crop):
  """Jitted `make_view_fn(view, ...)(rng, images)`."""
  return make_view_fn(view, image_size=image_size, crop=crop)(rng, images)


def copies(view: str) -> int:
  """Images per source image that `view` makes."""
  return {"train": 1, "eval": 1, "rotate4": 4, "exemplar8": 8, "simclr2": 2}[view]
