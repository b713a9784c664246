"""Tests for the host crops of the views (and JAX/TF sampler and resize parity)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from s4l_jax.data import datasets, tf_views
from s4l_jax.data import views
from s4l_jax.data.ops import crops as crop_ops, registry, resize

pytestmark = pytest.mark.tf


def _ks(a, b):
  """Two-sample Kolmogorov-Smirnov statistic."""
  grid = np.sort(np.concatenate([a, b]))
  cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)
  return np.abs(cdf(a) - cdf(b)).max()


def _features(image, seed=(1, 2)):
  return {"image": tf.constant(image), "label": tf.constant(0, tf.int64),
          "seed": tf.constant(seed, tf.int64)}


@pytest.mark.parametrize("h,w", [(224, 224), (180, 300)])
@pytest.mark.slow
def test_jax_box_sampler_matches_tf(h, w):
  n = 10_000
  seeds = tf.random.experimental.stateless_split([0, 0], n)
  sample = tf.function(lambda s: tf.map_fn(
      lambda sd: tf_views.sample_box(sd, [h, w, 3])[1][:2], s,
      fn_output_signature=tf.int32, parallel_iterations=64))
  tf_hw = sample(seeds).numpy().astype(np.float64)
  jax_hw = np.asarray(crop_ops.inception_crop_boxes(jax.random.key(1), n, h, w),
                      np.float64)[:, 2:]
  for name, stat in (("area", lambda s: s[:, 0] * s[:, 1] / (h * w)),
                     ("aspect", lambda s: s[:, 1] / s[:, 0]),
                     ("height", lambda s: s[:, 0] / h)):
    ks = _ks(stat(tf_hw), stat(jax_hw))
    assert ks < 0.05, (name, ks)  # 0.05 >> 0.027 (alpha=0.001 at n=10k).


@pytest.mark.slow
def test_tf_multi_crop_matches_jax_crop_and_resize():
  img = np.random.RandomState(0).randint(0, 256, (64, 48, 3)).astype(np.uint8)
  seeds = [tf.constant([i, 7], tf.int64) for i in range(4)]
  got = tf_views._multi_crop(tf.constant(img), seeds, 16, crop_ops.S4L_AREA,
                             crop_ops.S4L_ASPECT).numpy()
  for seed, crop in zip(seeds, got):
    begin, size, _ = tf_views.sample_box(seed, [64, 48, 3])
    box = jnp.array([begin[0], begin[1], size[0], size[1]])
    want = resize.crop_and_resize(jnp.asarray(img, jnp.float32) / 255, box, 16)
    np.testing.assert_allclose(crop, want, atol=1e-4)


@pytest.mark.parametrize("view,crop", [("train", "pad_crop"), ("rotate4", "inception"),
                                       ("train", "none")])
def test_tf_single_crop_is_uint8_at_size(view, crop):
  img = np.random.RandomState(0).randint(0, 256, (40, 40, 3)).astype(np.uint8)
  out = tf_views.make_tf_crop_fn(view, image_size=16, crop=crop, decode=False)(_features(img))
  assert out["image"].shape == (16, 16, 3) and out["image"].dtype == tf.uint8
  assert set(out) == {"image", "label"}


def test_tf_pad_crop_is_a_window_of_the_padded_image():
  img = np.random.RandomState(1).randint(0, 256, (16, 16, 3)).astype(np.uint8)
  padded = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
  fn = tf_views.make_tf_crop_fn("pad_crop", image_size=16, crop="none", decode=False)
  got = fn(_features(img))["image"].numpy()
  assert any(np.array_equal(got, padded[y:y + 16, x:x + 16]) for y in range(9) for x in range(9))


def test_tf_inception_crop_matches_jax_resize_of_the_box():
  img = np.random.RandomState(2).randint(0, 256, (64, 48, 3)).astype(np.uint8)
  fn = tf_views.make_tf_crop_fn("inception_crop", image_size=16, crop="none", decode=False)
  got = fn(_features(img, (4, 9)))["image"].numpy()
  begin, size, _ = tf_views.sample_box(tf.constant([4, 9], tf.int64), [64, 48, 3])
  box = jnp.array([begin[0], begin[1], size[0], size[1]])
  want = resize.crop_and_resize(jnp.asarray(img, jnp.float32), box, 16)
  np.testing.assert_allclose(got, want, atol=0.5 + 1e-3)  # uint8 rounding of the host crop


def test_tf_two_crops_decode_once_and_differ():
  img = np.random.RandomState(0).randint(0, 256, (40, 40, 3)).astype(np.uint8)
  fn = tf_views.make_tf_crop_fn("simclr2", image_size=16, crop="inception", decode=True)
  out = fn({"image": tf.io.encode_jpeg(tf.constant(img)), "label": tf.constant(3, tf.int64),
            "seed": tf.constant([5, 6], tf.int64)})["image"].numpy()
  assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8
  assert len({v.tobytes() for v in out}) == 2


def test_tf_exemplar8_emits_canvas_and_boxes():
  img = np.random.RandomState(0).randint(0, 256, (40, 30, 3)).astype(np.uint8)
  fn = tf_views.make_tf_crop_fn("exemplar8", image_size=16, crop="inception", decode=False)
  out = fn(_features(img))
  canvas, boxes = out["image"].numpy(), out["boxes"].numpy()
  c = tf_views.CANVAS
  assert canvas.shape == (c, c, 3) and boxes.shape == (8, 4)
  np.testing.assert_array_equal(canvas[:40, :30], img)
  assert not canvas[40:].any() and not canvas[:, 30:].any()
  y, x, h, w = boxes.T
  assert np.all((y >= 0) & (x >= 0) & (y + h <= 40) & (x + w <= 30))
  assert len({tuple(b) for b in boxes}) == 8


def test_unknown_view_raises():
  with pytest.raises(ValueError, match="exemplar8"):
    tf_views.make_tf_crop_fn("bad", image_size=8, crop="none", decode=False)


def test_every_crop_op_has_a_host_twin():
  assert views.host_crops() == list(registry.CROPS)
  twins = {registry.CROPS[name]().host.name for name in registry.CROPS}
  assert twins == set(tf_views.HOST_TWINS) | {crop_ops.SAMPLED_BOX.name}


def test_tf_data_refuses_a_device_only_crop_in_one_line(monkeypatch):
  monkeypatch.setitem(registry.CROPS, "device_only",
                      lambda: registry.Crop(lambda rng, images, size, view: images))
  assert views.copies("device_only|flip") == 1  # the device path takes it
  with pytest.raises(ValueError) as e:
    tf_views.make_tf_crop_fn("device_only|flip", image_size=8, crop="none", decode=False)
  assert str(e.value) == (
      "crop op 'device_only' has no tf.data twin: tf.data supports inception_crop, pad_crop, "
      "central_crop, simclr_crop, central_crop_875, resize_small_crop (or use "
      "input.pipeline=memory)")


def _jax_bicubic_uint8(img, box, size):
  crop = resize.bicubic_crop_and_resize(jnp.asarray(img, jnp.float32), jnp.asarray(box), size)
  return np.clip(np.asarray(crop), 0, 255)


@pytest.mark.parametrize("view,crops", [("simclr_train", 1), ("simclr2", 2)])
def test_tf_simclr_crops_are_the_jax_bicubic_of_the_box(view, crops):
  """Host SimCLR crops: tf.image.resize(bicubic) of the sampled box = the JAX bicubic, up to
  the host's uint8 rounding (and clipping of the cubic overshoot)."""
  img = np.random.RandomState(3).randint(0, 256, (64, 48, 3)).astype(np.uint8)
  seed = tf.constant([4, 9], tf.int64)
  got = tf_views.make_tf_crop_fn(view, image_size=16, crop="inception", decode=False)(
      _features(img, (4, 9)))["image"].numpy().reshape(crops, 16, 16, 3)
  seeds = [seed] if crops == 1 else tf_views._split(seed, crops)
  for s, crop in zip(seeds, got):
    begin, size, _ = tf_views.sample_box(s, [64, 48, 3], crop_ops.SIMCLR_AREA, crop_ops.SIMCLR_ASPECT)
    box = [begin[0], begin[1], size[0], size[1]]
    np.testing.assert_allclose(crop, _jax_bicubic_uint8(img, box, 16), atol=0.5 + 1e-3)


def test_tf_simclr_eval_is_the_jax_central_875_crop():
  img = np.random.RandomState(4).randint(0, 256, (36, 50, 3)).astype(np.uint8)
  got = tf_views.make_tf_crop_fn("simclr_eval", image_size=16, crop="inception", decode=False)(
      _features(img))["image"].numpy()
  want = _jax_bicubic_uint8(img, crop_ops.simclr_central_box(36, 50), 16)
  np.testing.assert_allclose(got, want, atol=0.5 + 1e-3)


@pytest.mark.parametrize("h,w,size,ratio", [
    (36, 50, 16, crop_ops.S4L_EVAL_RATIO),  # downsampling by exactly 2: exact .5 averages
    (16, 16, 16, crop_ops.S4L_EVAL_RATIO),  # upsampling (area on a small image)
    (375, 500, 224, crop_ops.S4L_EVAL_RATIO),  # ImageNet's geometry
    (100, 75, 32, 1.0), (33, 97, 24, 1.3)])
def test_eval_crop_host_twin_agrees_with_the_device_crop(h, w, size, ratio):
  """resize_small_crop on tf.data (TF's area resize of 0..255 values) and on the device (the
  area matrices on [0, 1] values) agree to float32 rounding (measured <= 2.4e-7, 6e-5 of a
  level); the uint8 eval images differ by at most 1 level, only where the host's value is
  within 1e-4 of a level of a half: area averages of integer levels land exactly on halves
  (x.5 after a 2x2 average), which TF rounds half to even and the device, a rounding error
  away, rounds one way or the other."""
  img = np.random.RandomState(h).randint(0, 256, (h, w, 3)).astype(np.uint8)
  host = tf_views._resize_small_crop(tf.constant(img), size, ratio=ratio).numpy()
  device = np.asarray(crop_ops.resize_small(jnp.asarray(img[None], jnp.float32) / 255, size,
                                            ratio))[0]
  np.testing.assert_allclose(device, host, rtol=0, atol=1e-6)
  eval_crop = f"resize_small_crop({ratio!r})"
  host_u8 = tf_views.make_tf_eval_fn(eval_crop, image_size=size, decode=False)(
      _features(img))["image"].numpy().astype(int)
  device_u8 = np.asarray(views.make_eval_crop_fn(eval_crop, image_size=size)(img[None]))[0]
  off = host_u8 != device_u8
  assert np.abs(host_u8 - device_u8).max() <= 1
  np.testing.assert_allclose((host[off] * 255) % 1, 0.5, atol=1e-4)


def test_imagenet_eval_crop_is_s4l_short_side_256_over_224_area_central_crop():
  """ImageNet's default eval crop on tf.data is the S4L eval written out in TF ops (the
  pipeline's eval before the crop became a registered op): bit for bit."""
  img = np.random.RandomState(5).randint(0, 256, (375, 500, 3)).astype(np.uint8)
  family = datasets.get("imagenet2012")
  got = tf_views.make_tf_eval_fn(family.eval_crop, image_size=224, decode=False)(
      _features(img))["image"].numpy()
  resized = tf.image.resize(img, [256, 341], "area").numpy()  # short side 375 -> 256
  want = np.round(np.clip(resized[16:240, 58:282] / 255.0, 0, 1) * 255).astype(np.uint8)
  np.testing.assert_array_equal(got, want)


def test_tf_eval_fn_refuses_a_random_crop():
  with pytest.raises(ValueError, match=r"^input.eval_crop='inception_crop' must be one "
                                       r"deterministic crop op call"):
    tf_views.make_tf_eval_fn("inception_crop", image_size=16, decode=False)
