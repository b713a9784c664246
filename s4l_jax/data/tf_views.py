"""The host half of the views for tf.data (TFDS / image folders): decode and crop only.

Each crop op declares its host twin (`registry.Crop.host`, a `HOST_TWINS` name with the crop's
parameters); a crop op without one is refused in one line. `make_tf_crop_fn` emits uint8 crops
at the view's size (or, for many inception crops, the
decoded image on a canvas plus the boxes); `views.make_view_fn(..., host_cropped=True)` applies
the rest of the view on the device with the registered JAX ops. Randomness comes only from
`features["seed"]` (int64 (2,)) through `tf.random.stateless_*`, so a stream is reproducible
given its seed. Boxes come from `tf.image.stateless_sample_distorted_bounding_box` (the
reference sampler that `crops.inception_crop_boxes` reimplements). `make_tf_eval_fn` runs the
eval crop's twin (`input.eval_crop`).

Resizing follows the view's `resize` (`resize.RESIZES`): the host calls `tf.image.resize` with
that method, the reference that the JAX resizes match; bicubic crops are clipped to [0, 1]
when rounded to uint8 here, whereas the device path keeps the kernel's overshoot until the
next clip (SimCLR's first clip comes after the colour jitter). Canvas crops (>=
`CANVAS_MIN_CROPS` per image) are resized on the device (`resize.RESIZES[...].canvas_fn`).
"""
from typing import Callable

import tensorflow as tf

from s4l_jax.data import views
from s4l_jax.data.ops import registry
# The crop constants are shared with the JAX crops (which import no TensorFlow).
from s4l_jax.data.ops.crops import MAX_ATTEMPTS, MIN_COVERED, S4L_ASPECT, S4L_AREA, SAMPLED_BOX  # pylint: disable=g-multiple-import

CANVAS = 512
CANVAS_MIN_CROPS = 4  # inception crops per image from which the host emits a canvas + boxes

TFViewFn = Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


def _split(seed, n):
  return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _shape(image, decode):
  return tf.image.extract_jpeg_shape(image) if decode else tf.shape(image)


def _uint8(x):
  """[0, 1] float -> uint8, rounded (the host output; error <= 0.5 / 255)."""
  return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def _decode(image, decode):
  """Full decode to uint8 (H, W, 3), or the uint8 tensor itself."""
  return tf.io.decode_jpeg(image, channels=3) if decode else image


def sample_box(seed, shape, area_range=S4L_AREA, aspect_range=S4L_ASPECT):
  """TF box sampler: (begin (3,), size (3,), normalised [y1, x1, y2, x2])."""
  begin, size, bbox = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=MIN_COVERED, aspect_ratio_range=aspect_range,
      area_range=area_range, max_attempts=MAX_ATTEMPTS,
      use_image_if_no_bounding_boxes=True)
  return begin, size, bbox[0, 0]


def decode_and_inception_crop(image, seed, *, image_size, decode,
                              area_range=S4L_AREA, aspect_range=S4L_ASPECT, method="bilinear"):
  """Samples a box, decodes only that window (fused), resizes (`method`, bilinear|bicubic).

  Returns float32 (S, S, 3) in [0, 1].
  """
  begin, size, _ = sample_box(seed, _shape(image, decode), area_range,
                              aspect_range)
  if decode:
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    crop = tf.io.decode_and_crop_jpeg(image, window, channels=3)
  else:
    crop = tf.slice(image, begin, size)
  return tf.image.resize(crop, [image_size, image_size], method) / 255.0


def _multi_crop(image, seeds, image_size, area_range, aspect_range, method="bilinear"):
  """Decoded uint8 (H, W, 3) -> (K, S, S, 3) in [0, 1], K = len(seeds).

  Bilinear: one `crop_and_resize` call. Boxes are mapped so that its align-corners
  grid equals the half-pixel grid of `tf.image.resize` on the crop (endpoints
  clamped inside the crop, which only matters when upsampling). Otherwise one
  `tf.image.resize(method=method)` per crop.
  """
  shape = tf.shape(image)
  if method != "bilinear":
    crops = [tf.image.resize(tf.slice(image, *sample_box(seed, shape, area_range,
                                                         aspect_range)[:2]),
                             [image_size, image_size], method) for seed in seeds]
    return tf.stack(crops) / 255.0
  hw = tf.cast(shape[:2], tf.float32)
  boxes = []
  for seed in seeds:
    begin, size, _ = sample_box(seed, shape, area_range, aspect_range)
    y0 = tf.cast(begin[:2], tf.float32)
    ext = tf.cast(size[:2], tf.float32)
    half = 0.5 * ext / image_size
    lo = tf.clip_by_value(y0 + half - 0.5, y0, y0 + ext - 1)
    hi = tf.clip_by_value(y0 + ext - half - 0.5, y0, y0 + ext - 1)
    boxes.append(tf.concat([lo, hi], 0) / tf.tile(tf.maximum(hw - 1, 1), [2]))
  crops = tf.image.crop_and_resize(
      tf.cast(image, tf.float32)[None], tf.stack(boxes),
      tf.zeros([len(seeds)], tf.int32), [image_size, image_size], "bilinear")
  return crops / 255.0


def _canvas(image, seeds, area_range, aspect_range):
  """Decoded uint8 (H, W, 3) -> (uint8 (CANVAS, CANVAS, 3), int32 (K, 4) boxes).

  The image is zero-padded at the bottom/right (first downscaled to fit if a side
  exceeds CANVAS); boxes `[y, x, h, w]` are the `_multi_crop` boxes for `seeds`.
  """
  hw = tf.shape(image)[:2]
  scale = CANVAS / tf.cast(tf.reduce_max(hw), tf.float32)
  fit = tf.cast(tf.round(tf.cast(hw, tf.float32) * tf.minimum(scale, 1.0)), tf.int32)
  image = tf.cond(scale < 1.0, lambda: tf.cast(tf.round(tf.image.resize(
      image, fit, antialias=True)), tf.uint8), lambda: image)
  boxes = []
  for seed in seeds:
    begin, size, _ = sample_box(seed, tf.shape(image), area_range, aspect_range)
    boxes.append(tf.concat([begin[:2], size[:2]], 0))
  # Two concats: ~3x faster than tf.pad / pad_to_bounding_box on uint8 here.
  h, w = tf.unstack(tf.shape(image)[:2])
  image = tf.concat([image, tf.zeros([h, CANVAS - w, 3], tf.uint8)], 1)
  canvas = tf.concat([image, tf.zeros([CANVAS - h, CANVAS, 3], tf.uint8)], 0)
  return tf.ensure_shape(canvas, [CANVAS, CANVAS, 3]), tf.stack(boxes)


def _central(image, image_size, method="bilinear"):
  """Central square of the short side, resized (`method`); float [0, 1]."""
  shape = tf.shape(image)
  side = tf.minimum(shape[0], shape[1])
  crop = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2,
                                       (shape[1] - side) // 2, side, side)
  return tf.image.resize(crop, [image_size, image_size], method) / 255.0


def _central_fraction(image, image_size, method="bicubic", *, fraction):
  """SimCLR's eval crop (`crops.simclr_central_box`), resized (`method`); float [0, 1]."""
  shape = tf.shape(image)
  side = tf.cast(tf.math.rint(fraction * tf.cast(
      tf.minimum(shape[0], shape[1]), tf.float32)), tf.int32)
  crop = tf.image.crop_to_bounding_box(image, (shape[0] - side + 1) // 2,
                                       (shape[1] - side + 1) // 2, side, side)
  return tf.image.resize(crop, [image_size, image_size], method) / 255.0


def _pad_crop(image, seed, image_size, *, pad):
  """Reflect pad by `pad`, random crop; float [0, 1]."""
  padded = tf.pad(tf.cast(image, tf.float32) / 255.0,
                  [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
  return tf.image.stateless_random_crop(padded, [image_size, image_size, 3],
                                        seed)


def _resize_small_crop(image, image_size, *, ratio):
  """S4L's eval crop (`crops.resize_small`): short side to round(image_size x ratio) (area),
  central crop; float [0, 1]."""
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  small = round(image_size * ratio)
  new_hw = tf.cast(tf.round(hw * small / tf.reduce_min(hw)), tf.int32)
  image = tf.image.resize(image, new_hw, "area")
  top = (new_hw[0] - image_size) // 2
  left = (new_hw[1] - image_size) // 2
  return image[top:top + image_size, left:left + image_size] / 255.0


# The host twins of crop ops (`registry.HostTwin.name`) but the sampled boxes (`SAMPLED_BOX`,
# `make_tf_crop_fn`): fn(uint8 (H, W, 3), seed, S, view, **twin.kwargs) -> (S, S, 3) in [0, 1].
HOST_TWINS = {
    "pad_crop": lambda image, seed, size, view, **kw: _pad_crop(image, seed, size, **kw),
    "central": lambda image, seed, size, view: _central(image, size, view.resize),
    "central_fraction": lambda image, seed, size, view, **kw: _central_fraction(
        image, size, view.resize, **kw),
    "resize_small": lambda image, seed, size, view, **kw: _resize_small_crop(image, size, **kw),
}


def make_tf_crop_fn(view: str, *, image_size: int, crop: str, decode: bool) -> TFViewFn:
  """Returns `fn(features) -> dict` for `tf.data.Dataset.map`: the host crops of a view.

  Args:
    view: a view name or composition (`views.resolve(view, crop)`).
    image_size: output side S.
    crop: `input.crop`, the crop op of the named views.
    decode: `features["image"]` is JPEG bytes (True) or uint8 (H, W, 3).

  The fn reads `features["image"]`, `features["label"]`, `features["seed"]` and returns
  "label" (and "soft_label", passed through when present) and uint8 "image": (S, S, 3) for
  one crop per image (a `SAMPLED_BOX` crop op decodes only the crop window, `decode_and_crop_jpeg`);
  (K, S, S, 3) for K crops (decoded once); for K >= `CANVAS_MIN_CROPS` box crops, the decoded
  image zero-padded to (CANVAS, CANVAS, 3) plus "boxes" int32 (K, 4), resized on the device.
  """
  spec = views.resolve(view, crop)
  twin = views.host_twin(spec)
  inception = twin == SAMPLED_BOX
  crop_decoded = lambda image, seed: HOST_TWINS[twin.name](image, seed, image_size, spec,
                                                           **dict(twin.kwargs))

  def fn(features):
    image, seed = features["image"], features["seed"]
    out = {k: features[k] for k in ("label", "soft_label") if k in features}
    if spec.crops == 1 and inception:
      return out | {"image": _uint8(decode_and_inception_crop(
          image, seed, image_size=image_size, decode=decode, area_range=spec.area_range,
          aspect_range=spec.aspect_range, method=spec.resize))}
    image = _decode(image, decode)
    if spec.crops == 1:
      return out | {"image": _uint8(crop_decoded(image, seed))}
    seeds = _split(seed, spec.crops)
    if not inception:
      return out | {"image": _uint8(tf.stack([crop_decoded(image, s) for s in seeds]))}
    if spec.crops >= CANVAS_MIN_CROPS:
      canvas, boxes = _canvas(image, seeds, spec.area_range, spec.aspect_range)
      return out | {"image": canvas, "boxes": boxes}
    return out | {"image": _uint8(_multi_crop(image, seeds, image_size, spec.area_range,
                                              spec.aspect_range, spec.resize))}

  return fn


def make_tf_eval_fn(eval_crop: str, *, image_size: int, decode: bool) -> TFViewFn:
  """Returns `fn(features) -> {"image": uint8 (S, S, 3), "label"}`: the host twin of the eval
  crop `eval_crop` (`input.eval_crop`, `views.eval_crop_view`; the in-memory pipeline runs
  its device implementation) on the decoded image, rounded to uint8."""
  spec = views.eval_crop_view(eval_crop)
  twin = views.host_twin(spec)
  crop = lambda image: HOST_TWINS[twin.name](image, None, image_size, spec, **dict(twin.kwargs))
  return lambda features: {"image": _uint8(crop(_decode(features["image"], decode))),
                           "label": features["label"]}
