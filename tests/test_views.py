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
from s4l_jax.data import datasets, views
from s4l_jax.data.ops import colour, crops, geometry, pretext, registry, resize, simclr
from testing_utils import load_config, tiny


def _rand_images(b=2, h=16, w=16, seed=0):
  rs = np.random.RandomState(seed)
  return jnp.asarray(rs.randint(0, 256, (b, h, w, 3)), jnp.uint8)


def test_rotate4_matches_np_rot90():
  x = np.asarray(_rand_images(h=12, w=12), np.float32)
  out = np.asarray(geometry.rotate4(jnp.asarray(x)))
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
  hsv = np.asarray(colour.rgb_to_hsv(jnp.asarray(rgb)))
  want = np.array([colorsys.rgb_to_hsv(*c) for c in rgb])
  np.testing.assert_allclose(hsv, want, atol=1e-5)
  back = np.asarray(colour.hsv_to_rgb(jnp.asarray(want, jnp.float32)))
  np.testing.assert_allclose(back, [colorsys.hsv_to_rgb(*c) for c in want],
                             atol=1e-5)
  np.testing.assert_allclose(back, rgb, atol=1e-5)


def test_hsv_noise_extreme_draws_stay_in_range():
  img = jnp.asarray(np.random.RandomState(1).rand(8, 8, 3), jnp.float32)
  noise = jax.jit(colour.apply_hsv_noise)
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
  monkeypatch.setitem(registry.OPS, "hsv_noise", lambda: registry.Op(lambda rng, x: x))
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
@pytest.mark.slow
def test_inception_crop_box_statistics(h, w):
  boxes = crops.inception_crop_boxes(jax.random.key(0), 20_000, h, w)
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
    out = np.asarray(crops.pad_crop(jax.random.key(i), img, 16))
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
    ("simclr2", "inception", 2), ("simclr2", "pad_crop", 2), ("simclr_train", "inception", None),
    ("simclr_eval", "inception", None)])
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
  with pytest.raises(ValueError, match=r"unknown op 'flipp'; .* ops \(.*flip, rotate4"):
    views.parse_view("pad_crop|flipp")
  with pytest.raises(ValueError, match="exactly one crop op, first"):
    views.parse_view("flip|hsv_noise")
  with pytest.raises(ValueError, match="exactly one crop op, first"):
    views.parse_view("pad_crop|flip|inception_crop")
  for bad in ("pad_crop*0|flip", "pad_crop*two|flip", "pad_crop*|flip"):
    with pytest.raises(ValueError, match="crop count after '\\*' must be an integer >= 1"):
      views.parse_view(bad)


@pytest.mark.slow
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
  assert views.resolve("simclr2", "inception").area_range == crops.SIMCLR_AREA
  assert views.resolve("eval", "pad_crop").crop == "central_crop"


@pytest.mark.parametrize("view,n", [("train", 1), ("eval", 1), ("rotate4", 4), ("exemplar8", 8),
                                    ("simclr2", 2), ("simclr_train", 1), ("simclr_eval", 1),
                                    ("simclr_crop*2|simclr_augment", 2),
                                    ("pad_crop|flip|rotate4", 4),
                                    ("inception_crop|flip|hsv_noise", 1), ("pad_crop*2|flip", 2),
                                    ("inception_crop*3|flip|rotate4", 12)])
@pytest.mark.slow
def test_copies_match_the_view_output(view, n):
  assert views.copies(view) == n
  out = views.make_view_fn(view, image_size=8, crop="pad_crop")(
      jax.random.key(0), {"image": _rand_images(b=3, h=8, w=8)})
  assert out["image"].shape == (3,) + ((n,) if n > 1 else ()) + (8, 8, 3)


@pytest.mark.parametrize("named,composed", [
    ("train", "pad_crop|flip"), ("rotate4", "pad_crop|flip|rotate4"),
    ("exemplar8", "pad_crop*8|flip|hsv_noise")])
@pytest.mark.slow
def test_named_view_equals_its_composition(named, composed):
  """Same ops, same keys: the registry's composition reproduces the named view exactly."""
  imgs, rng = _rand_images(h=16, w=16), jax.random.key(4)
  a = views.make_view_fn(named, image_size=16, crop="pad_crop")(rng, {"image": imgs})
  b = views.make_view_fn(composed, image_size=16, crop="none")(rng, {"image": imgs})
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("view", ["train", "rotate4", "simclr2", "exemplar8", "simclr_train"])
@pytest.mark.slow
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


@pytest.mark.slow
def test_composed_view_trains(tmp_path):
  """A view written in the config as a composition trains end to end on digits."""
  config = tiny(load_config("supervised", "dataset=digits"), steps=3)
  config.input.labeled.view = "pad_crop|flip|hsv_noise"
  results = runner.run(config, str(tmp_path))  # DivergenceGuard stops a non-finite step
  assert results["steps"] == 3 and 0 <= results["top1"] <= 1
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["input"]["labeled"]["view"] == "pad_crop|flip|hsv_noise"


def test_views_import_does_not_load_tensorflow():
  code = ("import sys, s4l_jax.data.views; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


# ---- SimCLRv2 (`simclr:data_util.py`): NumPy references, independent of the JAX code ----

def _np_keys(x, a=-0.5):
  """Keys cubic kernel, float64."""
  x = abs(x)
  if x <= 1:
    return (a + 2) * x**3 - (a + 3) * x**2 + 1
  return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0


def _np_cubic_weights(n_in, n_out, table=1024):
  """(n_out, n_in) TF2 bicubic weights: half-pixel centres, offset rounded to 1/table px,
  out-of-range taps dropped and the rest renormalised."""
  mat = np.zeros((n_out, n_in))
  for i in range(n_out):
    src = (i + 0.5) * n_in / n_out - 0.5
    base = int(np.floor(src))
    frac = np.rint((src - base) * table) / table
    for tap in range(base - 1, base + 3):
      if 0 <= tap < n_in:
        mat[i, tap] = _np_keys(tap - base - frac)
    mat[i] /= mat[i].sum()
  return mat


def _np_bicubic(image, box, size):
  """Bicubic resize of image[y:y+h, x:x+w] (H, W, C) to (size, size, C), float64."""
  y, x, h, w = box
  crop = np.asarray(image, np.float64)[y:y + h, x:x + w]
  return np.einsum("ih,hwc,jw->ijc", _np_cubic_weights(h, size), crop,
                   _np_cubic_weights(w, size))


@pytest.mark.parametrize("box,size", [((0, 0, 37, 29), 16), ((3, 5, 20, 11), 24),
                                      ((0, 0, 37, 29), 64), ((10, 4, 1, 1), 5),
                                      ((2, 2, 7, 9), 7), ((30, 0, 7, 29), 224)])
def test_bicubic_matches_numpy_keys_cubic(box, size):
  img = np.random.RandomState(0).rand(37, 29, 3).astype(np.float32)
  got = jax.jit(resize.bicubic_crop_and_resize, static_argnums=2)(
      jnp.asarray(img), jnp.array(box), size)
  np.testing.assert_allclose(got, _np_bicubic(img, box, size), atol=2e-6)


@pytest.mark.slow
def test_bicubic_closed_forms():
  """Identity at the crop's size; constants kept (renormalised edges); a ramp is reproduced
  where all 4 taps are inside, at the source position rounded to 1/1024 px (TF's table)."""
  img = jnp.asarray(np.random.RandomState(1).rand(20, 20, 3), jnp.float32)
  np.testing.assert_allclose(resize.bicubic_crop_and_resize(img, jnp.array([3, 4, 12, 12]), 12),
                             img[3:15, 4:16], atol=1e-6)
  np.testing.assert_allclose(resize.bicubic_crop_and_resize(jnp.full((9, 9, 1), 0.3),
                                                           jnp.array([0, 0, 9, 9]), 31),
                             0.3, atol=1e-6)
  n_in, n_out = 50, 37
  ramp = jnp.broadcast_to(jnp.arange(n_in, dtype=jnp.float32)[:, None, None], (n_in, 1, 1))
  out = np.asarray(resize.bicubic_crop_and_resize(ramp, jnp.array([0, 0, n_in, 1]), n_out))
  src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  inside = (np.floor(src) >= 1) & (np.floor(src) + 2 <= n_in - 1)
  want = np.floor(src) + np.rint((src - np.floor(src)) * 1024) / 1024
  np.testing.assert_allclose(out[inside, 0, 0], want[inside], atol=2e-5)
  assert np.abs(out[inside, 0, 0] - src[inside]).max() <= 0.5 / 1024 + 2e-5


@pytest.mark.tf
@pytest.mark.slow
def test_bicubic_matches_tf_image_resize():
  tf = pytest.importorskip("tensorflow")
  img = np.random.RandomState(2).rand(41, 33, 3).astype(np.float32)
  for box, size in (((0, 0, 41, 33), 16), ((5, 3, 30, 17), 48), ((1, 2, 3, 4), 9)):
    y, x, h, w = box
    want = tf.image.resize(img[y:y + h, x:x + w], [size, size], method="bicubic").numpy()
    got = resize.bicubic_crop_and_resize(jnp.asarray(img), jnp.array(box), size)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_saturation_is_tf_adjust_saturation_not_a_luma_blend():
  out = colour.adjust_saturation(jnp.array([[[0.2, 0.5, 0.8]]]), 1.5)
  np.testing.assert_allclose(out[0, 0], [0.0, 0.4, 0.8], atol=1e-6)


def _np_hsv_op(image, fn):
  """Applies fn(h, s, v) -> (h, s, v) per pixel through colorsys."""
  flat = [colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*p))) for p in image.reshape(-1, 3)]
  return np.array(flat).reshape(image.shape)


_NP_JITTER = (
    lambda x, f: x * f,
    lambda x, f: (x - x.mean(axis=(0, 1))) * f + x.mean(axis=(0, 1)),
    lambda x, f: _np_hsv_op(x, lambda h, s, v: (h, min(max(s * f, 0.0), 1.0), v)),
    lambda x, f: _np_hsv_op(x, lambda h, s, v: ((h + f) % 1.0, s, v)),
)


@pytest.mark.parametrize("index,factor", [(0, 0.2), (0, 1.7), (1, 0.3), (1, 1.8), (2, 0.2),
                                          (2, 1.8), (3, -0.2), (3, 0.15)])
@pytest.mark.slow
def test_each_jitter_op_at_a_fixed_factor(index, factor):
  img = np.random.RandomState(3).rand(6, 5, 3)
  got = colour.JITTER_OPS[index](jnp.asarray(img, jnp.float32), factor)
  np.testing.assert_allclose(got, _NP_JITTER[index](img, factor), atol=2e-6)


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_color_jitter_applies_ops_in_order_clipping_each(order):
  img = np.random.RandomState(4).rand(6, 5, 3)
  factors = (1.7, 1.6, 1.5, 0.1)  # Brightness and contrast leave [0, 1]: the clips matter.
  want = img
  for i in order:
    want = np.clip(_NP_JITTER[i](want, factors[i]), 0, 1)
  got = colour.apply_color_jitter(jnp.asarray(img, jnp.float32), jnp.array(factors),
                                 jnp.array(order))
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_color_jitter_brightness_range(strength):
  """On a grey image only brightness acts: out = 0.5 * U(1 - 0.8 s, 1 + 0.8 s) at strength s
  (0.2..1.8 at SimCLR's ImageNet strength 1, 0.6..1.4 at its CIFAR strength 0.5)."""
  grey = jnp.full((2, 2, 3), 0.5)
  keys = jax.random.split(jax.random.key(0), 4000)
  out = np.asarray(jax.vmap(colour.color_jitter, in_axes=(0, None, None))(keys, grey, strength))
  np.testing.assert_allclose(out, out[:, :1, :1, :1] * np.ones_like(out), atol=1e-6)
  f = out[:, 0, 0, 0] / 0.5
  lo, hi = 1 - 0.8 * strength, 1 + 0.8 * strength
  assert lo - 1e-6 <= f.min() < lo + 0.01 and hi - 0.01 < f.max() <= hi + 1e-6
  assert abs(f.mean() - 1.0) < 0.03  # sd of the mean: 0.46 / sqrt(4000) = 0.007 at s = 1


@pytest.mark.parametrize("size,taps", [(224, 23), (32, 3), (96, 9), (19, 1)])
@pytest.mark.slow
def test_blur_kernel_size_and_normalisation(size, taps):
  sigma = 2.0
  delta = np.zeros((size, size, 1), np.float32)
  c = size // 2
  delta[c, c] = 1.0
  out = np.asarray(simclr.apply_gaussian_blur(jnp.asarray(delta), sigma))[..., 0]
  ys, xs = np.nonzero(out)
  assert ys.max() - ys.min() + 1 == taps and xs.max() - xs.min() + 1 == taps
  r = taps // 2
  k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
  k /= k.sum()
  np.testing.assert_allclose(out[c - r:c + r + 1, c - r:c + r + 1], np.outer(k, k), atol=1e-7)
  np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)
  # Zero padding: a constant image darkens at the corner by the kernel mass inside.
  ones = np.asarray(simclr.apply_gaussian_blur(jnp.ones((size, size, 1)), sigma))
  np.testing.assert_allclose(ones[0, 0, 0], k[r:].sum() ** 2, atol=1e-6)


def _frequency(fn, image, n=20_000):
  """Fraction of n keys for which fn(key, image) changes the image."""
  out = jax.vmap(fn, in_axes=(0, None))(jax.random.split(jax.random.key(7), n), image)
  return float(np.mean(np.any(np.asarray(out) != np.asarray(image), axis=(1, 2, 3))))


@pytest.mark.parametrize("name,p", [("color_jitter", 0.8), ("grey", 0.2), ("blur", 0.5),
                                    ("flip", 0.5)])
@pytest.mark.slow
def test_random_op_frequencies(monkeypatch, name, p):
  """The ops of simclr_augment fire with SimCLR's probabilities (5 binomial sd)."""
  # Any blur must show: a tiny sigma is exactly the identity in float32.
  monkeypatch.setattr(simclr, "gaussian_blur", lambda rng, x: x + 1.0)
  image = jnp.asarray(np.random.RandomState(5).rand(4, 4, 3), jnp.float32)
  freq = _frequency(registry.OPS[name]().fn, image)
  assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 20_000), freq


def test_simclr_central_box_is_simclrs_center_crop():
  # rint(0.875 * short) half to even; offsets ((H - side) + 1) // 2.
  assert crops.simclr_central_box(224, 224) == (14, 14, 196, 196)
  assert crops.simclr_central_box(20, 30) == (1, 6, 18, 18)  # 17.5 -> 18
  assert crops.simclr_central_box(36, 27) == (6, 2, 24, 24)  # 23.625 -> 24
  assert crops.simclr_central_box(333, 500) == (21, 105, 291, 291)  # 291.375


def test_simclr_eval_is_the_bicubic_central_875_crop():
  imgs = _rand_images(h=20, w=30)
  fn = jax.jit(views.make_view_fn("simclr_eval", image_size=12, crop="pad_crop"))
  out = np.asarray(fn(None, {"image": imgs})["image"])
  for b in range(2):
    want = _np_bicubic(np.asarray(imgs[b]) / 255, (1, 6, 18, 18), 12)
    np.testing.assert_allclose(out[b], np.clip(want * 2 - 1, -1, 1), atol=1e-5)


@pytest.mark.slow
def test_simclr_train_is_a_bicubic_simclr_box_and_a_flip():
  imgs, rng = _rand_images(b=3, h=24, w=20), jax.random.key(8)
  out = np.asarray(views.make_view_fn("simclr_train", image_size=16, crop="inception")(
      rng, {"image": imgs})["image"])
  k_crop, k_flip = jax.random.split(rng)
  boxes = np.asarray(crops.inception_crop_boxes(k_crop, 3, 24, 20, crops.SIMCLR_AREA,
                                                crops.SIMCLR_ASPECT))
  flips = [bool(jax.random.bernoulli(k)) for k in jax.random.split(k_flip, 3)]
  for b in range(3):
    want = _np_bicubic(np.asarray(imgs[b]) / 255, boxes[b], 16)
    want = np.clip((want[:, ::-1] if flips[b] else want) * 2 - 1, -1, 1)
    np.testing.assert_allclose(out[b], want, atol=1e-5)


@pytest.mark.parametrize("named,composed", [("simclr2", "simclr_crop*2|simclr_augment"),
                                            ("simclr_train", "simclr_crop|flip"),
                                            ("simclr_eval", "central_crop_875")])
@pytest.mark.slow
def test_simclr_views_equal_their_compositions(named, composed):
  """With input.crop=inception the SimCLR views are their `simclr_crop` compositions."""
  imgs, rng = _rand_images(h=20, w=20), jax.random.key(9)
  a = views.make_view_fn(named, image_size=16, crop="inception")(rng, {"image": imgs})
  b = views.make_view_fn(composed, image_size=16, crop="none")(rng, {"image": imgs})
  np.testing.assert_array_equal(a["image"], b["image"])
  assert views.parse_view(composed).resize == "bicubic"


@pytest.mark.slow
def test_bicubic_canvas_crops_are_resized_bicubic():
  """tf.data canvas + boxes of a bicubic view: resized here with the bicubic resize."""
  canvas = _rand_images(b=2, h=40, w=40, seed=6)
  boxes = jnp.asarray([[[0, 0, 40, 40], [3, 5, 20, 17], [10, 2, 7, 30], [1, 1, 9, 9]]] * 2)
  fn = views.make_view_fn("simclr_crop*4", image_size=16, crop="none", host_cropped=True)
  got = np.asarray(fn(jax.random.key(0), {"image": canvas, "boxes": boxes})["image"])
  for b, k in itertools.product(range(2), range(4)):
    want = _np_bicubic(np.asarray(canvas[b]) / 255, np.asarray(boxes[b, k]), 16)
    np.testing.assert_allclose(got[b, k], np.clip(want * 2 - 1, -1, 1), atol=1e-5)


def _mark(rng, x):
  """A random op whose output shows its key: the whole crop set to one uniform draw."""
  return jnp.full_like(x, jax.random.uniform(rng))


@pytest.mark.slow
def test_op_at_k_touches_only_crop_k_with_one_key_per_image(monkeypatch):
  monkeypatch.setitem(registry.OPS, "mark", lambda: registry.Op(_mark))
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
  monkeypatch.setitem(registry.OPS, "mark", lambda: registry.Op(_mark))
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


@pytest.mark.slow
def test_fixmatch_views_weak_copy_is_untouched_and_strong_is_deterministic_per_key(monkeypatch):
  view = "central_crop*2|flip|shift|randaugment@1|cutout@1"
  imgs = _rand_images(b=4, h=16, w=16)
  fn = jax.jit(views.make_view_fn(view, image_size=16, crop="none"))
  a, b = (np.asarray(fn(jax.random.key(7), {"image": imgs})["image"]) for _ in range(2))
  np.testing.assert_array_equal(a, b)
  other = np.asarray(fn(jax.random.key(8), {"image": imgs})["image"])
  assert not np.array_equal(a[:, 1], other[:, 1])
  for name in ("randaugment", "cutout"):
    monkeypatch.setitem(registry.OPS, name, lambda: registry.Op(lambda rng, x: x))
  plain = np.asarray(views.make_view_fn(view, image_size=16, crop="none")(
      jax.random.key(7), {"image": imgs})["image"])
  np.testing.assert_array_equal(a[:, 0], plain[:, 0])  # weak: flip + shift only
  assert not np.array_equal(a[:, 1], plain[:, 1])


# ---- Jigsaw tiles, relative-position patches, colour dropping ----

@pytest.mark.parametrize("size,geometry", [(16, (5, 4, 0)), (32, (10, 8, 1)), (225, (75, 64, 0)),
                                           (224, (74, 63, 1)), (8, (2, 1, 1))])
def test_grid_geometry_is_noroozis_ratio(size, geometry):
  assert pretext.grid_geometry(size) == geometry


def _coordinate_image(size):
  """uint8 (1, S, S, 3) whose pixel (y, x) holds (4 y, 4 x, 7): a tile tells where it was cut."""
  y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  return np.stack([4 * y, 4 * x, np.full_like(y, 7)], -1)[None].astype(np.uint8)


def _corners(tiles):
  """(..., t, t, 3) view output in [-1, 1] -> int (..., 2) (y, x) of each tile's top-left, after
  checking that every tile is the contiguous window from there."""
  pixels = np.rint((np.asarray(tiles) + 1) * 255 / 2).astype(int)
  corner = pixels[..., 0, 0, :2] // 4
  t = tiles.shape[-2]
  offsets = np.stack(np.meshgrid(np.arange(t), np.arange(t), indexing="ij"), -1)
  np.testing.assert_array_equal(pixels[..., :2] // 4,
                                corner[..., None, None, :] + offsets)
  return corner


def test_jigsaw_tiles_are_jittered_windows_of_each_grid_cell():
  size = 16
  cell, tile, origin = pretext.grid_geometry(size)
  fn = jax.jit(views.make_view_fn("central_crop|jigsaw_tiles", image_size=size, crop="none"))
  seen = set()
  for seed in range(30):
    out = fn(jax.random.PRNGKey(seed), {"image": _coordinate_image(size)})["image"]
    assert out.shape == (1, 9, tile, tile, 3)
    corners = _corners(out[0])
    for j, (y, x) in enumerate(corners):
      row, col = divmod(j, 3)
      jitter = (y - origin - row * cell, x - origin - col * cell)
      assert 0 <= min(jitter) and max(jitter) <= cell - tile, (j, y, x)
      seen.add(jitter)
  assert seen == set(itertools.product(range(cell - tile + 1), repeat=2))  # every gap occurs


def test_patch_pair_is_the_centre_and_the_labelled_neighbour():
  size = 16
  cell, tile, origin = pretext.grid_geometry(size)
  offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
  fn = jax.jit(views.make_view_fn("central_crop|patch_pair", image_size=size, crop="none"))
  labels = []
  for seed in range(60):
    out = fn(jax.random.PRNGKey(seed), {"image": _coordinate_image(size)})
    position = np.asarray(out["position"])
    assert out["image"].shape == (1, 2, tile, tile, 3) and position[0, 0] == position[0, 1]
    centre, neighbour = (tuple((yx - origin) // cell) for yx in _corners(out["image"][0]))
    label = int(position[0, 0])
    assert centre == (1, 1)
    assert (neighbour[0] - 1, neighbour[1] - 1) == offsets[label]
    labels.append(label)
  assert set(labels) == set(range(8))


@pytest.mark.slow
def test_color_drop_keeps_one_channel_and_fills_the_others_with_faint_noise():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(0, 1, (6, 6, 3)), jnp.float32)
  kept_channels = set()
  for seed in range(20):
    out = np.asarray(pretext.color_drop(jax.random.PRNGKey(seed), image))
    same = [c for c in range(3) if np.array_equal(out[..., c], image[..., c])]
    assert len(same) == 1
    kept = np.asarray(image[..., same[0]])
    for c in set(range(3)) - set(same):
      assert abs(out[..., c].mean() - kept.mean()) < 0.01 * kept.std()
      assert 0.5 < out[..., c].std() / (pretext.DROP_NOISE * kept.std()) < 1.5
    kept_channels.add(same[0])
  assert kept_channels == {0, 1, 2}


@pytest.mark.slow
def test_named_pretext_views_copies_and_labels():
  images = _rand_images(b=3)
  for name, copies, label in (("jigsaw", 9, None), ("relative_position", 2, "position")):
    assert views.copies(name) == copies
    out = views.make_view_fn(name, image_size=16, crop="pad_crop")(jax.random.PRNGKey(0),
                                                                    {"image": images})
    assert out["image"].shape == (3, copies, 4, 4, 3)
    assert set(out) == {"image"} | ({label} if label else set())


@pytest.mark.slow
def test_ops_fn_applies_a_views_ops_to_images_in_pm1():
  images = _rand_images(b=2)
  composed = views.make_view_fn("central_crop|rotate4", image_size=16, crop="none")(
      None, {"image": images})
  derived = views.make_ops_fn("rotate4")(None, views.to_pm1(images, max_value=255))
  np.testing.assert_allclose(derived["image"], composed["image"], atol=1e-6)
  np.testing.assert_array_equal(derived["rotation"], composed["rotation"])
  pairs = views.make_ops_fn("patch_pair|color_drop")(jax.random.PRNGKey(0),
                                                      views.to_pm1(images, max_value=255))
  assert pairs["image"].shape == (2, 2, 4, 4, 3) and pairs["position"].shape == (2, 2)


# ---- Ops with arguments ----

@pytest.mark.parametrize("explicit, bare, changed", [
    ("pad_crop(4)*2|flip|shift(0.125)|randaugment(2, None)@1|cutout(fraction=0.5)@1",
     "pad_crop*2|flip|shift|randaugment@1|cutout@1",
     "pad_crop*2|flip|shift|randaugment(2, 27)@1|cutout@1"),
    ("simclr_crop*2|simclr_augment(strength=1.0)", "simclr2", "simclr_crop*2|simclr_augment(0.5)"),
    ("pad_crop|color_jitter(1.0, 0.8)|grey(p=0.2)|blur(0.5)", "pad_crop|color_jitter|grey|blur",
     "pad_crop|color_jitter|grey(0.3)|blur"),
    ("central_crop_875(0.875)", "simclr_eval", "central_crop_875(0.5)"),
])
def test_op_with_its_default_arguments_is_the_bare_op_bit_for_bit(explicit, bare, changed):
  """The same traced program (jaxpr and its constants), so the same bits for every input and
  key; another argument gives another program."""
  batch, rng = {"image": _rand_images(h=12, w=12)}, jax.random.key(3)

  def program(view):
    closed = jax.make_jaxpr(views.make_view_fn(view, image_size=8, crop="inception"))(rng, batch)
    return str(closed.jaxpr), [np.asarray(c).tobytes() for c in closed.consts]
  assert program(explicit) == program(bare) != program(changed)


def test_op_arguments_change_what_the_op_does():
  imgs, rng = _rand_images(h=8, w=8), jax.random.key(2)
  run = lambda view: np.asarray(views.make_view_fn(view, image_size=8, crop="none")(
      rng, {"image": imgs})["image"])
  plain = np.asarray(views.to_pm1(imgs, max_value=255))
  np.testing.assert_array_equal(run("pad_crop(0)"), plain)  # no padding: the image itself
  grey = run("central_crop|grey(p=1.0)")
  np.testing.assert_allclose(grey, grey[..., :1].repeat(3, -1), atol=1e-6)
  np.testing.assert_array_equal(run("central_crop|grey(p=0.0)"), plain)


def test_color_jitter_arguments_reach_the_jitter():
  """color_jitter(s, p=1) is `color_jitter` at strength s, always applied."""
  rng = jax.random.key(2)
  image = jnp.asarray(np.random.RandomState(0).rand(2, 2, 3), jnp.float32)
  op = registry.build("color_jitter(0.5, p=1.0)", registry.OPS)
  np.testing.assert_array_equal(op.fn(rng, image), colour.color_jitter(
      jax.random.split(rng)[0], image, strength=0.5))


@pytest.mark.parametrize("size", [8, 16, 32])
def test_whole_short_side_eval_crop_is_the_identity_on_stored_images(size):
  """The eval crop of digits, cifar10 and folders (`resize_small_crop(1.0)`) returns the
  in-memory pipeline's S x S images bit for bit, every uint8 level included."""
  levels = np.arange(size * size * 3 * 4) % 256
  images = np.random.RandomState(size).permutation(levels).astype(np.uint8).reshape(
      4, size, size, 3)
  for family in ("digits", "cifar10", "folder:/x"):
    fn = views.make_eval_crop_fn(datasets.get(family).eval_crop, image_size=size)
    np.testing.assert_array_equal(fn(images), images)


def test_resize_small_is_the_box_average_and_its_geometry_s4l():
  """A 3x downscale averages 3x3 blocks; ImageNet's geometry on a 375 x 500 photo: short side
  256, long side round(500 x 256 / 375) = 341, the crop at ((256 - 224) // 2, (341 - 224) // 2)."""
  images = np.random.RandomState(0).uniform(size=(2, 48, 60, 3)).astype(np.float32)
  got = crops.resize_small(jnp.asarray(images), 16, 1.0)  # 48 x 60 -> 16 x 20, central 16
  want = images.reshape(2, 16, 3, 20, 3, 3).mean(axis=(2, 4))[:, :, 2:18]
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert crops.resize_small_geometry(375, 500, 224, crops.S4L_EVAL_RATIO) == (
      256, 341, 16, 58)
  rows = resize.area_matrix(37, 32, 0, 32)  # upsampling: each row still averages
  np.testing.assert_allclose(rows.sum(axis=1), 1, atol=1e-6)


def test_eval_crop_is_a_deterministic_crop_call_or_eval_view():
  assert views.eval_crop_view("simclr_eval") == views.parse_view("central_crop_875")
  assert views.eval_crop_view("resize_small_crop( 1.0 )").crop == "resize_small_crop(1.0)"
  for bad in ("inception_crop", "pad_crop", "central_crop|flip", "central_crop*2", "train"):
    with pytest.raises(ValueError, match=r"^input.eval_crop='.*' must be one deterministic "
                       r"crop op call \(e.g. resize_small_crop\(1.0\); central_crop, "
                       r"central_crop_875, resize_small_crop\) or the view eval or "
                       r"simclr_eval$"):
      views.eval_crop_view(bad)
  with pytest.raises(ValueError, match=r"^input.eval_crop: view 'resize_small_crop\(0.5\)': "
                                       r"resize_small_crop: ratio must be a number >= 1"):
    views.eval_crop_view("resize_small_crop(0.5)")


def test_eval_crop_fn_is_its_crop_op_rounded_to_uint8():
  """`simclr_eval` as the eval crop: SimCLR's central 0.875 box, bicubic, rounded half to even
  to uint8 (bicubic overshoot clipped)."""
  imgs = np.asarray(_rand_images(h=20, w=28))
  got = views.make_eval_crop_fn("simclr_eval", image_size=16)(imgs)
  box = crops.simclr_central_box(20, 28)
  crop = np.stack([resize.bicubic_crop_and_resize(im / 255, jnp.array(box), 16) for im in imgs])
  assert got.dtype == np.uint8 and got.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(got, np.round(np.clip(crop, 0, 1) * 255))
