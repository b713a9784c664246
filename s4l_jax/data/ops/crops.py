"""Crop ops: uint8-sourced images (B, H, W, C) in [0, 1] -> crops (B * K, S, S, C), K crops each.

Registered (`registry.register_crop`), each with its tf.data twin (`registry.HostTwin`, run by
`tf_views`): `inception_crop` (TF `sample_distorted_bounding_box` boxes, S4L ranges),
`simclr_crop` (the same sampler at SimCLR's ranges, bicubic), `pad_crop(pad=4)` (reflect pad,
random window: 12.5 % of the side at 32 px, 25 % at digits' 16, kept so that results do not
move), `central_crop` (central square of the short side), `central_crop_875(fraction=0.875)`
(SimCLR's eval crop) and `resize_small_crop(ratio=256/224)` (S4L's eval crop: the short side
resized to S x ratio with TF's area filter, the central S x S; the eval crop of every dataset
family, `DatasetFamily.eval_crop`).

Box sampling follows TF `sample_distorted_bounding_box` (kernel `GenerateRandomCrop` +
`SatisfiesOverlapConstraints`): aspect ratio uniform, integer height uniform between the
heights implied by the area bounds, integer offsets uniform in [0, size - crop), first valid
attempt wins, whole image as fallback. Crops are resized with the view's `resize`
(`resize.RESIZES`).
"""
import jax
import jax.numpy as jnp
import numpy as np

from s4l_jax.data.ops import registry
from s4l_jax.data.ops.resize import RESIZES, area_matrix, crop_and_resize

S4L_AREA = (0.05, 1.0)
S4L_ASPECT = (0.75, 1.33)
SIMCLR_AREA = (0.08, 1.0)
SIMCLR_ASPECT = (3 / 4, 4 / 3)
MIN_COVERED = 0.1
MAX_ATTEMPTS = 100
SIMCLR_CENTRAL = 0.875  # SimCLR eval: side of the central crop / the short side
S4L_EVAL_RATIO = 256 / 224  # S4L / ImageNet eval: resized short side / crop side
PAD = 4  # pad_crop's default padding (px)
BICUBIC = {"resize": "bicubic"}
SIMCLR_CROP = {"area_range": SIMCLR_AREA, "aspect_range": SIMCLR_ASPECT, **BICUBIC}


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


def pad_crop(rng, image, size, pad=PAD):
  """Reflect-pads float (H, W, C) by `pad` and takes a random size x size crop."""
  padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  hp, wp = padded.shape[:2]
  off = jax.random.randint(rng, (2,), 0, jnp.array([hp - size, wp - size]) + 1)
  return jax.lax.dynamic_slice(padded, (off[0], off[1], 0),
                               (size, size, image.shape[2]))


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


def resize_small_geometry(h: int, w: int, size: int, ratio: float) -> tuple[int, int, int, int]:
  """`resize_small_crop`'s geometry on an h x w image: (new_h, new_w, top, left), the image
  resized so that its short side is round(size x ratio) (each side rounded half to even in
  float32, as the host twin's TF ops), the crop's offsets (new - size) // 2."""
  small = np.float32(round(size * ratio))
  short = np.float32(min(h, w))
  new_h, new_w = (int(np.round(np.float32(side) * small / short)) for side in (h, w))
  return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def resize_small(images, size, ratio=S4L_EVAL_RATIO):
  """S4L's eval crop of (B, H, W, C): short side to round(size x ratio) by TF's area resize,
  central size x size (`resize_small_geometry`); the identity when that resize keeps the
  image (ratio 1 on size x size images), as TF's area resize (weights exactly 1) is."""
  _, h, w, _ = images.shape
  new_h, new_w, top, left = resize_small_geometry(h, w, size, ratio)
  if (new_h, new_w) == (h, w) == (size, size):
    return images
  wy, wx = area_matrix(h, new_h, top, size), area_matrix(w, new_w, left, size)
  return jnp.einsum("ih,bhwc,jw->bijc", wy, images, wx, precision=jax.lax.Precision.HIGHEST)


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


SAMPLED_BOX = registry.HostTwin("sampled_box")  # the host samples `tf_views.sample_box` boxes


@registry.register_crop("inception_crop")
def inception_crop():
  """S4L's inception crop: a TF-style random box per crop, S4L's area and aspect ranges."""
  return registry.Crop(_inception_crop, host=SAMPLED_BOX)


@registry.register_crop("pad_crop")
def pad_crop_op(pad: int = PAD):
  """Reflect pad by `pad` px, random size x size window per crop."""
  registry.check(isinstance(pad, int) and pad >= 0, f"pad_crop: pad must be an int >= 0, "
                 f"got {pad!r}")

  def fn(rng, images, size, view):
    images = _repeat(images, view.crops)
    keys = jax.random.split(rng, images.shape[0])
    return jax.vmap(pad_crop, in_axes=(0, 0, None, None))(keys, images, size, pad)
  return registry.Crop(fn, host=registry.HostTwin("pad_crop", (("pad", pad),)))


@registry.register_crop("central_crop")
def central_crop():
  """Central square of the short side, `view.resize`d (identity at size x size)."""
  def fn(rng, images, size, view):
    del rng
    return central_crop_resize(_repeat(images, view.crops), size, RESIZES[view.resize].fn)
  return registry.Crop(fn, random=False, host=registry.HostTwin("central"))


@registry.register_crop("simclr_crop")
def simclr_crop():
  """SimCLR's crop: `inception_crop`'s sampler at SimCLR's ranges, resized bicubic."""
  return registry.Crop(_inception_crop, view_fields=SIMCLR_CROP, host=SAMPLED_BOX)


@registry.register_crop("central_crop_875")
def central_crop_875(fraction: float = SIMCLR_CENTRAL):
  """SimCLR's eval crop: `simclr_central_box` (`fraction` of the short side), `view.resize`d
  (bicubic by default)."""
  registry.check(0 < fraction <= 1, f"central_crop_875: fraction must be in (0, 1], got "
                 f"{fraction!r}")

  def fn(rng, images, size, view):
    del rng
    box = jnp.array(simclr_central_box(*images.shape[1:3], fraction))
    resize = RESIZES[view.resize].fn
    return jax.vmap(lambda im: resize(im, box, size))(_repeat(images, view.crops))
  return registry.Crop(fn, random=False, view_fields=BICUBIC,
                       host=registry.HostTwin("central_fraction", (("fraction", fraction),)))


@registry.register_crop("resize_small_crop")
def resize_small_crop(ratio: float = S4L_EVAL_RATIO):
  """S4L's eval crop (`resize_small`): short side resized to round(S x ratio) with TF's area
  filter, central S x S; `ratio` 1 keeps the whole short side (the identity on S x S images)."""
  registry.check(isinstance(ratio, (int, float)) and ratio >= 1, f"resize_small_crop: ratio "
                 f"must be a number >= 1, got {ratio!r}")

  def fn(rng, images, size, view):
    del rng
    return resize_small(_repeat(images, view.crops), size, ratio)
  return registry.Crop(fn, random=False,
                       host=registry.HostTwin("resize_small", (("ratio", ratio),)))
