"""View recipes as TF ops and a tf.data stream for TFDS / image-folder data.

Twin of `views.py` for the host-side (ImageNet) path: same recipes, same
output dict layout, float32 in [-1, 1]; or, with `device_finish=True`, only
the host half (uint8 crops) for `views.make_finish_fn`. Randomness comes only from
`features["seed"]` (int64 (2,)) through `tf.random.stateless_*`, so a stream
is reproducible given its seed. Boxes come from
`tf.image.stateless_sample_distorted_bounding_box` (the reference sampler
that `views.inception_crop_boxes` reimplements).
"""
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# The recipe constants are shared with the JAX twin (which imports no TensorFlow).
from s4l_jax.data.views import (CROPS, MAX_ATTEMPTS, MIN_COVERED, NUM_EXEMPLAR, PAD,  # pylint: disable=g-multiple-import
                                S4L_ASPECT, S4L_AREA, SIMCLR_ASPECT, SIMCLR_AREA, VIEWS)

CANVAS = 512
GREY = (0.2989, 0.5870, 0.1140)

TFViewFn = Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


def _split(seed, n):
  return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _shape(image, decode):
  return tf.image.extract_jpeg_shape(image) if decode else tf.shape(image)


def _pm1(x):
  return tf.clip_by_value(x * 2.0 - 1.0, -1.0, 1.0)


def _uint8(x):
  """[0, 1] float -> uint8, rounded (the device_finish output; error <= 0.5 / 255)."""
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
                              area_range=S4L_AREA, aspect_range=S4L_ASPECT):
  """Samples a box, decodes only that window (fused), bilinear resize.

  Returns float32 (S, S, 3) in [0, 1].
  """
  begin, size, _ = sample_box(seed, _shape(image, decode), area_range,
                              aspect_range)
  if decode:
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    crop = tf.io.decode_and_crop_jpeg(image, window, channels=3)
  else:
    crop = tf.slice(image, begin, size)
  return tf.image.resize(crop, [image_size, image_size], "bilinear") / 255.0


def _multi_crop(image, seeds, image_size, area_range, aspect_range):
  """Decoded uint8 (H, W, 3) -> (K, S, S, 3) in [0, 1], K = len(seeds).

  One `crop_and_resize` call. Boxes are mapped so that its align-corners grid
  equals the half-pixel grid of `tf.image.resize` on the crop (endpoints
  clamped inside the crop, which only matters when upsampling).
  """
  shape = tf.shape(image)
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


def _central(image, image_size):
  """Central square of the short side, bilinear resize; float [0, 1]."""
  shape = tf.shape(image)
  side = tf.minimum(shape[0], shape[1])
  crop = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2,
                                       (shape[1] - side) // 2, side, side)
  return tf.image.resize(crop, [image_size, image_size], "bilinear") / 255.0


def _pad_crop(image, seed, image_size):
  """Reflect pad by 4, random crop; float [0, 1]."""
  padded = tf.pad(tf.cast(image, tf.float32) / 255.0,
                  [[PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
  return tf.image.stateless_random_crop(padded, [image_size, image_size, 3],
                                        seed)


def _crop(image, seed, image_size, crop, decode):
  if crop == "inception":
    return decode_and_inception_crop(image, seed, image_size=image_size,
                                     decode=decode)
  image = _decode(image, decode)
  if crop == "pad_crop":
    return _pad_crop(image, seed, image_size)
  return _central(image, image_size)


def hsv_noise(image, seed):
  """S4L `hsvnoise` on (..., S, S, 3) in [0, 1]; one draw per leading index."""
  n = tf.shape(image)[:-3]
  s = _split(seed, 4)
  u = lambda sd, shape, lim: tf.random.stateless_uniform(
      tf.concat([n, shape], 0), sd, -lim, lim)
  hue = u(s[0], [1, 1, 1], 0.1)
  gamma = tf.pow(2.0, u(s[1], [1, 1, 2], 2.0))
  scale = tf.pow(2.0, u(s[2], [1, 1, 2], 0.5))
  shift = u(s[3], [1, 1, 2], 0.1)
  hsv = tf.image.rgb_to_hsv(image)
  h = tf.math.floormod(hsv[..., :1] + hue, 1.0)
  sv = tf.pow(hsv[..., 1:], gamma) * scale + shift
  hsv = tf.clip_by_value(tf.concat([h, sv], -1), 0.0, 1.0)
  return tf.image.hsv_to_rgb(hsv)


@tf.function(jit_compile=True)
def _exemplar_post(x, s_flip, s_hsv):
  """Flip + HSV noise + [-1, 1] of (K, S, S, 3) patches, fused by XLA (the
  unfused TF ops cost ~4x more; HSV noise dominates exemplar8)."""
  flip = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], s_flip) < 0.5
  x = tf.where(flip, tf.reverse(x, [2]), x)
  return _pm1(hsv_noise(x, s_hsv))


def _grey(x):
  return tf.reduce_sum(x * tf.constant(GREY), -1, keepdims=True)


def _color_jitter(x, seed, strength=1.0):
  """SimCLR jitter on (S, S, 3) in [0, 1]: 4 ops in random order, clipped."""
  s = _split(seed, 5)
  s8 = 0.8 * strength
  uni = lambda sd, lo, hi: tf.random.stateless_uniform([], sd, lo, hi)
  fb = uni(s[0], max(0.0, 1 - s8), 1 + s8)
  fc = uni(s[1], 1 - s8, 1 + s8)
  fs = uni(s[2], 1 - s8, 1 + s8)
  dh = uni(s[3], -0.2 * strength, 0.2 * strength)
  perm = tf.argsort(tf.random.stateless_uniform([4], s[4]))
  for i in range(4):
    x = tf.switch_case(perm[i], [
        lambda: x * fb,
        lambda: tf.image.adjust_contrast(x, fc),
        lambda: _grey(x) + (x - _grey(x)) * fs,
        lambda: tf.image.adjust_hue(x, dh)])
    x = tf.clip_by_value(x, 0.0, 1.0)
  return x


def _blur(x, seed):
  """SimCLR Gaussian blur: sigma ~ U(0.1, 2), kernel S // 10, zero padding."""
  radius = x.shape[0] // 10 // 2
  sigma = tf.random.stateless_uniform([], seed, 0.1, 2.0)
  taps = tf.range(-radius, radius + 1, dtype=tf.float32)
  k = tf.exp(-taps**2 / (2 * sigma**2))
  k = tf.tile((k / tf.reduce_sum(k))[:, None, None, None], [1, 1, 3, 1])
  y = tf.nn.depthwise_conv2d(x[None], k, [1, 1, 1, 1], "SAME")
  y = tf.nn.depthwise_conv2d(y, tf.transpose(k, [1, 0, 2, 3]), [1, 1, 1, 1],
                             "SAME")
  return y[0]


def _simclr_single(x, seed):
  s = _split(seed, 6)
  coin = lambda sd, p: tf.random.stateless_uniform([], sd) < p
  x = tf.image.stateless_random_flip_left_right(x, s[0])
  x = tf.cond(coin(s[1], 0.8), lambda: _color_jitter(x, s[2]), lambda: x)
  x = tf.cond(coin(s[3], 0.2), lambda: tf.tile(_grey(x), [1, 1, 3]),
              lambda: x)
  x = tf.cond(coin(s[4], 0.5), lambda: _blur(x, s[5]), lambda: x)
  return tf.clip_by_value(x, 0.0, 1.0)


def _eval(image, image_size, decode):
  """Short side to image_size * 256 / 224 (area), central crop; [0, 1]."""
  image = _decode(image, decode)
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  small = round(image_size * 256 / 224)
  new_hw = tf.cast(tf.round(hw * small / tf.reduce_min(hw)), tf.int32)
  image = tf.image.resize(image, new_hw, "area")
  top = (new_hw[0] - image_size) // 2
  left = (new_hw[1] - image_size) // 2
  return image[top:top + image_size, left:left + image_size] / 255.0


def make_tf_view_fn(view: str, *, image_size: int, crop: str,
                    decode: bool, device_finish: bool = False) -> TFViewFn:
  """Returns `fn(features) -> dict` for `tf.data.Dataset.map`.

  Args:
    view: one of `VIEWS`; same recipes and output keys/shapes as
      `views.make_view_fn` (without the batch axis), plus "label".
    image_size: output side S.
    crop: one of `CROPS`. "inception" decodes only the crop window
      (`decode_and_crop_jpeg`) for "train"/"rotate4"; "exemplar8" and
      "simclr2" decode once and take all crops in one `crop_and_resize`.
    decode: `features["image"]` is JPEG bytes (True) or uint8 (H, W, 3).
    device_finish: emit only the host half, uint8 crops at S, for
      `views.make_finish_fn(view)` on the accelerator: "train"/"rotate4"/
      "eval" -> "image" (S, S, 3) (crop, resize, flip; no rotations);
      "simclr2" -> "image" (2, S, S, 3), the resized crops; "exemplar8" with
      crop "inception" -> "image" (CANVAS, CANVAS, 3), the decoded image
      zero-padded, and "boxes" int32 (8, 4), so that the 8 resizes also run
      on the device (other crops: "image" (8, S, S, 3)). Keeps host work
      near decode cost.

  The returned fn reads `features["image"]`, `features["label"]` and
  `features["seed"]` (int64 (2,), ignored by "eval").
  """
  if view not in VIEWS:
    raise ValueError(f"Unknown view {view!r}; valid: {VIEWS}.")
  if crop not in CROPS:
    raise ValueError(f"Unknown crop {crop!r}; valid: {CROPS}.")

  def multi(image, seed, k, area_range, aspect_range):
    seeds = _split(seed, k)
    image = _decode(image, decode)
    if crop == "inception":
      return _multi_crop(image, seeds, image_size, area_range, aspect_range)
    if crop == "pad_crop":
      return tf.stack([_pad_crop(image, s, image_size) for s in seeds])
    return tf.tile(_central(image, image_size)[None], [k, 1, 1, 1])

  def fn(features):
    image, label = features["image"], features["label"]
    out = _uint8 if device_finish else _pm1
    if view == "eval":
      return {"image": out(_eval(image, image_size, decode)), "label": label}
    s_crop, s_flip, s_aug = _split(features["seed"], 3)
    if view in ("train", "rotate4"):
      x = _crop(image, s_crop, image_size, crop, decode)
      x = out(tf.image.stateless_random_flip_left_right(x, s_flip))
      if view == "train" or device_finish:
        return {"image": x, "label": label}
      x = tf.stack([tf.image.rot90(x, k) for k in range(4)])
      return {"image": x, "rotation": tf.range(4, dtype=tf.int32),
              "label": label}
    if view == "exemplar8":
      if device_finish and crop == "inception":
        canvas, boxes = _canvas(_decode(image, decode), _split(s_crop, NUM_EXEMPLAR),
                                S4L_AREA, S4L_ASPECT)
        return {"image": canvas, "boxes": boxes, "label": label}
      x = multi(image, s_crop, NUM_EXEMPLAR, S4L_AREA, S4L_ASPECT)
      if device_finish:
        return {"image": _uint8(x), "label": label}
      return {"image": _exemplar_post(x, s_flip, s_aug), "label": label}
    x = multi(image, s_crop, 2, SIMCLR_AREA, SIMCLR_ASPECT)
    if device_finish:
      return {"image": _uint8(x), "label": label}
    x = tf.stack([_simclr_single(x[i], s) for i, s in
                  enumerate(_split(s_aug, 2))])
    return {"image": _pm1(x), "label": label}

  return fn


def build_tfds_stream(builder_name_or_folder: str, split: str, *, view: str,
                      image_size: int, crop: str, global_batch: int,
                      seed: int, process_index: int, process_count: int,
                      filter_filenames=None, data_dir=None,
                      shuffle_buffer: int = 10_000, device_finish: bool = False
                      ) -> Iterator[dict[str, np.ndarray]]:
  """Host-local batches of `view` from a TFDS builder or an image folder.

  Args:
    builder_name_or_folder: TFDS name (e.g. "imagenet2012") or a folder laid
      out as `<split>/<class>/<image>.jpg` (`tfds.folder_dataset.ImageFolder`).
    split: split name, e.g. "train".
    view, image_size, crop: see `make_tf_view_fn`.
    global_batch: batch over all hosts; each host yields
      global_batch // process_count.
    seed: shuffle and augmentation seed; the stream is deterministic given it.
    process_index, process_count: this host's shard (disjoint, covering).
    filter_filenames: optional set of file basenames (S4L label lists) to keep.
    data_dir: TFDS data dir for named builders.
    shuffle_buffer: examples in the shuffle buffer.
    device_finish: emit uint8 crops for `views.make_finish_fn` (see
      `make_tf_view_fn`).

  Returns:
    Iterator of numpy dicts with the view's keys plus "label". Training views
    shuffle and repeat forever with drop_remainder; "eval" is one ordered pass
    that keeps the last partial batch.
  """
  if global_batch % process_count:
    raise ValueError(f"{global_batch=} not divisible by {process_count=}.")
  train = view != "eval"
  decoders = {"image": tfds.decode.SkipDecoding()}
  if tf.io.gfile.isdir(builder_name_or_folder):
    builder = tfds.folder_dataset.ImageFolder(builder_name_or_folder)
    # ImageFolder has a fixed file order and no sub-split API: shard by index.
    ds = builder.as_dataset(split=split, decoders=decoders)
    ds = ds.shard(process_count, process_index)
    name_key = "image/filename"
  else:
    builder = tfds.builder(builder_name_or_folder, data_dir=data_dir)
    ds = builder.as_dataset(
        split=tfds.even_splits(split, process_count)[process_index],
        shuffle_files=train, decoders=decoders,
        read_config=tfds.ReadConfig(shuffle_seed=seed))
    name_key = "file_name"
  if filter_filenames is not None:
    names = sorted(filter_filenames)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.ones([len(names)], tf.int64)), 0)
    ds = ds.filter(lambda ex: table.lookup(
        tf.strings.regex_replace(ex[name_key], r".*[/\\]", "")) > 0)
  ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
  if train:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  host_seed = tf.constant([seed, process_index], tf.int64)
  ds = ds.enumerate().map(lambda i, ex: {
      **ex, "seed": tf.random.experimental.stateless_fold_in(host_seed, i)})
  view_fn = make_tf_view_fn(view, image_size=image_size, crop=crop,
                            decode=True, device_finish=device_finish)
  ds = ds.map(view_fn, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.batch(global_batch // process_count, drop_remainder=train)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))
