"""Tests for the view registry and its pure-JAX ops."""
import colorsys
import itertools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import runner
from s4l_jax.data import views
from testing_utils import load_config, tiny


def _rand_images(b=2, h=16, w=16, seed=0):
  rs = np.random.RandomState(seed)
  return jnp.asarray(rs.randint(0, 256, (b, h, w, 3)), jnp.uint8)


def test_rotate4_matches_np_rot90():
  x = np.asarray(_rand_images(h=12, w=12), np.float32)
  out = np.asarray(views.rotate4(jnp.asarray(x)))
  for b, k in itertools.product(range(2), range(4)):
    np.testing.assert_array_equal(out[b, k], np.rot90(x[b], k))


def test_rotate4_view_labels_and_rotations():
  imgs = _rand_images(h=12, w=12)
  out = views.make_view_fn("rotate4", image_size=12, crop="none")(
      jax.random.key(0), {"image": imgs})
  assert out["image"].shape == (2, 4, 12, 12, 3)
  np.testing.assert_array_equal(out["rotation"], [[0, 1, 2, 3]] * 2)
  assert out["rotation"].dtype == jnp.int32
  img = np.asarray(out["image"])
  for b, k in itertools.product(range(2), range(4)):
    np.testing.assert_array_equal(img[b, k], np.rot90(img[b, 0], k))
  # crop="none" at the input size is a flip only.
  src = np.asarray(imgs, np.float32) / 255 * 2 - 1
  for b in range(2):
    assert (np.allclose(img[b, 0], src[b], atol=1e-6)
            or np.allclose(img[b, 0], src[b, :, ::-1], atol=1e-6))


def test_rgb_hsv_roundtrip_against_colorsys():
  rgb = np.random.RandomState(0).rand(2000, 3).astype(np.float32)
  rgb[:10] = rgb[:10, :1]  # Greys (zero chroma).
  rgb[10] = 0.0
  hsv = np.asarray(views.rgb_to_hsv(jnp.asarray(rgb)))
  want = np.array([colorsys.rgb_to_hsv(*c) for c in rgb])
  np.testing.assert_allclose(hsv, want, atol=1e-5)
  back = np.asarray(views.hsv_to_rgb(jnp.asarray(want, jnp.float32)))
  np.testing.assert_allclose(back, [colorsys.hsv_to_rgb(*c) for c in want],
                             atol=1e-5)
  np.testing.assert_allclose(back, rgb, atol=1e-5)


def test_hsv_noise_extreme_draws_stay_in_range():
  img = jnp.asarray(np.random.RandomState(1).rand(8, 8, 3), jnp.float32)
  noise = jax.jit(views.apply_hsv_noise)
  for hue, g, s, b in itertools.product((-0.1, 0.1), (-2.0, 2.0),
                                        (-0.5, 0.5), (-0.1, 0.1)):
    out = noise(img, hue, jnp.full(2, g), jnp.full(2, s), jnp.full(2, b))
    pm1 = np.asarray(out) * 2 - 1
    assert np.all(np.isfinite(pm1))
    assert pm1.min() >= -1 - 1e-6 and pm1.max() <= 1 + 1e-6
  ident = noise(img, 0.0, jnp.zeros(2), jnp.zeros(2),
                                jnp.zeros(2))
  np.testing.assert_allclose(ident, img, atol=1e-5)


def test_exemplar8_views_are_distinct_crops_of_same_image(monkeypatch):
  # Pixel values encode position (exact under bilinear resampling) and image id.
  b, h, s = 2, 64, 16
  yy, xx = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
  src = np.stack([np.stack([yy * 4, xx * 4, np.full_like(yy, 50 + 100 * i)],
                           -1) for i in range(b)]).astype(np.uint8)
  monkeypatch.setitem(views.OPS, "hsv_noise", views.Op(lambda rng, x: x))
  fn = jax.jit(views.make_view_fn("exemplar8", image_size=s, crop="inception"))
  out = (np.asarray(fn(jax.random.key(3), {"image": jnp.asarray(src)})["image"]) + 1) / 2
  out *= 255
  assert out.shape == (b, 8, s, s, 3)
  for i in range(b):
    boxes = set()
    for v in range(8):
      y, x, ident = out[i, v, ..., 0], out[i, v, ..., 1], out[i, v, ..., 2]
      np.testing.assert_allclose(ident, 50 + 100 * i, atol=1e-3)
      if x[0, 0] > x[0, -1]:  # Undo the random flip.
        x = x[:, ::-1]
      # Rows/cols resample an axis-aligned sub-box: affine in the index.
      np.testing.assert_allclose(y, y[:, :1].repeat(s, 1), atol=1e-3)
      np.testing.assert_allclose(np.diff(y[:, 0], 2), 0, atol=1e-3)
      np.testing.assert_allclose(np.diff(x[0], 2), 0, atol=1e-3)
      assert 0 <= y.min() and y.max() <= (h - 1) * 4
      boxes.add((round(y[0, 0], 2), round(x[0, 0], 2), round(y[-1, 0], 2)))
    assert len(boxes) == 8


def _box_stats(boxes, h, w):
  y, x, bh, bw = np.asarray(boxes).T
  return y, x, bh, bw, bh * bw / (h * w), bw / bh


@pytest.mark.parametrize("h,w", [(224, 224), (180, 300)])
def test_inception_crop_box_statistics(h, w):
  boxes = views.inception_crop_boxes(jax.random.key(0), 20_000, h, w)
  y, x, bh, bw, area, aspect = _box_stats(boxes, h, w)
  whole = (bh == h) & (bw == w)
  assert np.all((y >= 0) & (x >= 0) & (y + bh <= h) & (x + bw <= w))
  assert np.all(whole | ((area >= 0.05) & (area <= 1.0)))
  assert np.all(area >= 0.1)  # min_object_covered w.r.t. the whole image.
  # Integer rounding of width = round(height * aspect) moves aspect by 0.5/h.
  tol = 0.5 / bh + 1e-6
  assert np.all(whole | ((aspect >= 0.75 - tol) & (aspect <= 1.33 + tol)))
  assert whole.mean() < 0.01


def test_pad_crop_is_exact_shift_of_padded_image():
  img = jnp.asarray(np.random.RandomState(0).rand(16, 16, 3), jnp.float32)
  padded = np.pad(np.asarray(img), ((4, 4), (4, 4), (0, 0)), mode="reflect")
  offsets = set()
  for i in range(30):
    out = np.asarray(views.pad_crop(jax.random.key(i), img, 16))
    hits = [(oy, ox) for oy in range(9) for ox in range(9)
            if np.array_equal(out, padded[oy:oy + 16, ox:ox + 16])]
    assert hits
    offsets.add(hits[0])
  assert len(offsets) > 10


def test_eval_view_deterministic_and_exact():
  imgs = _rand_images(h=20, w=28)
  fn = jax.jit(views.make_view_fn("eval", image_size=16, crop="inception"))
  a = fn(jax.random.key(0), {"image": imgs})["image"]
  np.testing.assert_array_equal(a, fn(jax.random.key(1), {"image": imgs})["image"])
  assert a.shape == (2, 16, 16, 3)
  same = views.make_view_fn("eval", image_size=20, crop="none")(
      None, {"image": imgs[:, :, 4:24]})["image"]
  np.testing.assert_allclose(same, np.asarray(imgs[:, :, 4:24]) / 255 * 2 - 1,
                             atol=1e-6)


@pytest.mark.parametrize("view,crop,views_per_image", [
    ("train", "inception", None), ("train", "pad_crop", None),
    ("train", "none", None), ("exemplar8", "pad_crop", 8),
    ("simclr2", "inception", 2)])
def test_views_shapes_range_determinism(view, crop, views_per_image):
  imgs = _rand_images(h=16, w=16)
  fn = jax.jit(views.make_view_fn(view, image_size=16, crop=crop))
  a = fn(jax.random.key(0), {"image": imgs})["image"]
  np.testing.assert_array_equal(a, fn(jax.random.key(0), {"image": imgs})["image"])
  want = (2,) + ((views_per_image,) if views_per_image else ()) + (16, 16, 3)
  assert a.shape == want and a.dtype == jnp.float32
  assert -1 <= a.min() and a.max() <= 1
  if views_per_image:
    assert not np.allclose(a[:, 0], a[:, 1])


def test_unknown_view_or_crop_raises():
  with pytest.raises(ValueError, match="rotate4"):
    views.make_view_fn("rot", image_size=8, crop="none")
  with pytest.raises(ValueError, match="pad_crop"):
    views.make_view_fn("train", image_size=8, crop="random")
  with pytest.raises(ValueError, match=r"unknown op 'flipp'; .* ops \(flip, hsv_noise"):
    views.parse_view("pad_crop|flipp")
  with pytest.raises(ValueError, match="exactly one crop op, first"):
    views.parse_view("flip|hsv_noise")
  with pytest.raises(ValueError, match="exactly one crop op, first"):
    views.parse_view("pad_crop|flip|inception_crop")
  for bad in ("pad_crop*0|flip", "pad_crop*two|flip", "pad_crop*|flip"):
    with pytest.raises(ValueError, match="crop count after '\\*' must be an integer >= 1"):
      views.parse_view(bad)


def test_crop_count_takes_independent_crops():
  """`pad_crop*2|flip`: two independent augmentations of each image (Mean Teacher's view)."""
  assert views.parse_view("pad_crop*2|flip") == views.View("pad_crop", ("flip",), crops=2)
  imgs = _rand_images(b=4, h=16, w=16)
  out = views.make_view_fn("pad_crop*2|flip", image_size=16, crop="none")(
      jax.random.key(1), {"image": imgs})["image"]
  assert out.shape == (4, 2, 16, 16, 3)
  assert not np.array_equal(out[:, 0], out[:, 1])


def test_composition_names_its_crop_and_named_views_follow_input_crop():
  assert views.resolve("inception_crop|flip|hsv_noise", "pad_crop") == views.View(
      "inception_crop", ("flip", "hsv_noise"))
  assert views.resolve("train", "none").crop == "central_crop"
  assert views.resolve("simclr2", "inception").area_range == views.SIMCLR_AREA
  assert views.resolve("eval", "pad_crop").crop == "central_crop"


@pytest.mark.parametrize("view,n", [("train", 1), ("eval", 1), ("rotate4", 4), ("exemplar8", 8),
                                    ("simclr2", 2), ("pad_crop|flip|rotate4", 4),
                                    ("inception_crop|flip|hsv_noise", 1), ("pad_crop*2|flip", 2),
                                    ("inception_crop*3|flip|rotate4", 12)])
def test_copies_match_the_view_output(view, n):
  assert views.copies(view) == n
  out = views.make_view_fn(view, image_size=8, crop="pad_crop")(
      jax.random.key(0), {"image": _rand_images(b=3, h=8, w=8)})
  assert out["image"].shape == (3,) + ((n,) if n > 1 else ()) + (8, 8, 3)


@pytest.mark.parametrize("named,composed", [
    ("train", "pad_crop|flip"), ("rotate4", "pad_crop|flip|rotate4"),
    ("exemplar8", "pad_crop*8|flip|hsv_noise")])
def test_named_view_equals_its_composition(named, composed):
  """Same ops, same keys: the registry's composition reproduces the named view exactly."""
  imgs, rng = _rand_images(h=16, w=16), jax.random.key(4)
  a = views.make_view_fn(named, image_size=16, crop="pad_crop")(rng, {"image": imgs})
  b = views.make_view_fn(composed, image_size=16, crop="none")(rng, {"image": imgs})
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("view", ["train", "rotate4", "simclr2", "exemplar8"])
def test_host_cropped_batch_gets_the_same_ops(view):
  """tf.data's uint8 crops finished on the device == the in-memory view of those crops with
  a no-op crop (central_crop at size): same registered ops, same keys after the crop."""
  k = views.copies(view)
  crops = _rand_images(b=2 * k, h=8, w=8, seed=3)
  rng = jax.random.key(5)
  host = crops.reshape((2, k, 8, 8, 3)) if k > 1 and view != "rotate4" else crops[:2]
  out = views.make_view_fn(view, image_size=8, crop="inception", host_cropped=True)(
      rng, {"image": host})
  after_crop = "|".join(views.NAMED_VIEWS[view].ops)
  flat = host.reshape((-1, 8, 8, 3))
  want = views.make_view_fn(f"central_crop|{after_crop}", image_size=8, crop="none")(
      rng, {"image": flat})
  np.testing.assert_array_equal(out["image"].reshape(want["image"].shape), want["image"])
  if view == "rotate4":
    np.testing.assert_array_equal(out["rotation"], want["rotation"])


def test_to_pm1_is_the_export_scaling():
  x = np.arange(256, dtype=np.uint8)
  want = x.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
  np.testing.assert_array_equal(views.to_pm1(x, max_value=255), want)  # IEEE, op by op
  np.testing.assert_array_equal(views.to_pm1(np.float32([0, 0.5, 1])), [-1, 0, 1])
  from s4l_jax import export  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(export.to_model_input(jnp.asarray(x)),
                                views.to_pm1(jnp.asarray(x), max_value=255))


def test_composed_view_trains(tmp_path):
  """A view written in the config as a composition trains end to end on digits."""
  config = tiny(load_config("supervised", "dataset=digits"), steps=3)
  config.input.labeled.view = "pad_crop|flip|hsv_noise"
  assert config.log_every_steps == 1  # train.check_finite then stops on any non-finite loss
  results = runner.run(config, str(tmp_path))
  assert results["steps"] == 3 and 0 <= results["top1"] <= 1
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["input"]["labeled"]["view"] == "pad_crop|flip|hsv_noise"


def test_views_import_does_not_load_tensorflow():
  code = ("import sys, s4l_jax.data.views; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


def _mark(rng, x):
  """A random op whose output shows its key: the whole crop set to one uniform draw."""
  return jnp.full_like(x, jax.random.uniform(rng))


def test_op_at_k_touches_only_crop_k_with_one_key_per_image(monkeypatch):
  monkeypatch.setitem(views.OPS, "mark", views.Op(_mark))
  imgs = _rand_images(b=3, h=8, w=8)
  rng = jax.random.key(4)
  out = np.asarray(views.make_view_fn("central_crop*3|mark@1", image_size=8, crop="none")(
      rng, {"image": imgs})["image"])
  assert out.shape == (3, 3, 8, 8, 3)
  plain = np.asarray(views.to_pm1(imgs, max_value=255))
  op_key = jax.random.split(rng, 2)[1]  # no key for the deterministic crop op's draws
  for i in range(3):
    np.testing.assert_array_equal(out[i, 0], plain[i])
    np.testing.assert_array_equal(out[i, 2], plain[i])
    want = 2 * float(jax.random.uniform(jax.random.split(op_key, 3)[i])) - 1
    np.testing.assert_allclose(out[i, 1], want, rtol=1e-6)


def test_op_at_k_after_a_copy_op_covers_all_copies_of_crop_k(monkeypatch):
  monkeypatch.setitem(views.OPS, "mark", views.Op(_mark))
  out = np.asarray(views.make_view_fn("central_crop*2|rotate4|mark@1", image_size=8,
                                      crop="none")(jax.random.key(0),
                                                   {"image": _rand_images(h=8, w=8)})["image"])
  assert out.shape == (2, 8, 8, 8, 3)
  for k in range(4):
    np.testing.assert_array_equal(out[:, k], np.rot90(out[:, 0], k, axes=(1, 2)))
  marked = out[:, 4:].reshape(2, 4, -1)
  assert np.all(marked == marked[..., :1]) and len(np.unique(marked[..., 0])) == 8


@pytest.mark.parametrize("bad, match", [("central_crop*2|flip@2", "0 <= k < 2"),
                                        ("central_crop|flip@1", "0 <= k < 1"),
                                        ("central_crop*2|rotate4@0", "random op"),
                                        ("central_crop*2|flip@x", "0 <= k"),
                                        ("central_crop*2|flop@1", "unknown op 'flop'")])
def test_bad_op_at_k_is_rejected(bad, match):
  with pytest.raises(ValueError, match=match):
    views.parse_view(bad)


def test_op_at_k_is_normalised_and_counts_copies():
  spec = views.parse_view("pad_crop*2| flip |randaugment @ 1|cutout@1")
  assert spec == views.View("pad_crop", ("flip", "randaugment@1", "cutout@1"), crops=2)
  assert views.copies("pad_crop*2|flip|randaugment@1|cutout@1") == 2


@pytest.mark.parametrize("size", [8, 16, 32])
def test_shift_takes_a_window_of_the_reflect_padded_crop(size):
  pad = {8: 1, 16: 2, 32: 4}[size]  # 12.5 %, at least 1 px
  imgs = _rand_images(b=64, h=size, w=size, seed=1)
  out = np.asarray(jax.jit(views.make_view_fn("central_crop|shift", image_size=size,
                                              crop="none"))(jax.random.key(2),
                                                            {"image": imgs})["image"])
  offsets = set()
  for img, got in zip(np.asarray(imgs), np.rint((out + 1) * 127.5)):
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
            if np.array_equal(padded[dy:dy + size, dx:dx + size], got)]
    assert hits
    offsets.update(hits)
  assert {0, 2 * pad} <= {dy for dy, _ in offsets}  # the whole range of shifts is used


def test_fixmatch_views_weak_copy_is_untouched_and_strong_is_deterministic_per_key(monkeypatch):
  view = "central_crop*2|flip|shift|randaugment@1|cutout@1"
  imgs = _rand_images(b=4, h=16, w=16)
  fn = jax.jit(views.make_view_fn(view, image_size=16, crop="none"))
  a, b = (np.asarray(fn(jax.random.key(7), {"image": imgs})["image"]) for _ in range(2))
  np.testing.assert_array_equal(a, b)
  other = np.asarray(fn(jax.random.key(8), {"image": imgs})["image"])
  assert not np.array_equal(a[:, 1], other[:, 1])
  for name in ("randaugment", "cutout"):
    monkeypatch.setitem(views.OPS, name, views.Op(lambda rng, x: x))
  plain = np.asarray(views.make_view_fn(view, image_size=16, crop="none")(
      jax.random.key(7), {"image": imgs})["image"])
  np.testing.assert_array_equal(a[:, 0], plain[:, 0])  # weak: flip + shift only
  assert not np.array_equal(a[:, 1], plain[:, 1])
