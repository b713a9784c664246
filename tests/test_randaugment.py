"""RandAugment ops vs PIL on uint8 images at fixed magnitudes; RA and Cutout draws."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from s4l_jax.data import views  # pylint: disable=unused-import (registers the ops)
from s4l_jax.data.ops import randaugment as ra, registry

S = 24


def _image(seed=0, size=S):
  """A uint8 RGB image with structure (a gradient plus noise), not a constant."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size]
  base = np.stack([8 * xx, 6 * yy, 4 * (xx + yy)], -1) + rng.integers(0, 60, (size, size, 3))
  return np.clip(base + 20, 0, 255).astype(np.uint8)


def _ours(fn, img, magnitude):
  out = jax.jit(fn)(jnp.asarray(img, jnp.float32) / 255.0, jnp.float32(magnitude))
  return np.asarray(out, np.float64) * 255.0


def _pil(fn, img, *args):
  return np.asarray(fn(Image.fromarray(img), *args), np.float64)


# Lookup-table ops: the same levels as PIL (ours are level / 255 in float32: compared rounded).
@pytest.mark.parametrize("name, ours, pil", [
    ("Equalize", lambda x, m: ra.equalize(x), lambda im: ImageOps.equalize(im)),
    ("Posterize4", lambda x, m: ra.posterize(x, 4.7), lambda im: ImageOps.posterize(im, 4)),
    ("Posterize7", lambda x, m: ra.posterize(x, 7.0), lambda im: ImageOps.posterize(im, 7)),
    ("Posterize8", lambda x, m: ra.posterize(x, 8.9), lambda im: ImageOps.posterize(im, 8)),
    ("Solarize", lambda x, m: ra.solarize(x, 100 / 256), lambda im: ImageOps.solarize(im, 100)),
    ("Solarize0", lambda x, m: ra.solarize(x, 0.0), lambda im: ImageOps.solarize(im, 0)),
])
def test_lookup_table_ops_equal_pil(name, ours, pil):
  img = _image()
  got = _ours(ours, img, 0.0)
  np.testing.assert_allclose(got, np.rint(got), atol=1e-4)
  np.testing.assert_array_equal(np.rint(got), _pil(pil, img), err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_autocontrast_equals_pil_but_where_pils_double_rounds_down(seed):
  """PIL's lut is int(q * 255 / (hi - lo) - lo * 255 / (hi - lo)) in doubles, which can land
  just below an exact integer; ours is the exact floor((q - lo) 255 / (hi - lo))."""
  img = _image(seed)
  got = np.rint(_ours(lambda x, m: ra.auto_contrast(x), img, 0.0))
  want = _pil(ImageOps.autocontrast, img)
  q = img.astype(np.int64)
  lo, hi = q.min(axis=(0, 1)), q.max(axis=(0, 1))
  np.testing.assert_array_equal(got, (q - lo) * 255 // (hi - lo))
  exact = (q - lo) * 255 % (hi - lo) == 0
  assert np.all((got == want) | (exact & (got - want == 1)))
  assert np.mean(got == want) > 0.9


def test_equalize_and_autocontrast_of_a_narrow_image_equal_pil():
  """Few levels, one channel constant: the lut edge cases (identity, last bin)."""
  img = np.random.default_rng(3).integers(100, 104, (S, S, 3)).astype(np.uint8)
  img[..., 2] = 77
  for ours, pil in ((ra.equalize, ImageOps.equalize), (ra.auto_contrast, ImageOps.autocontrast)):
    got = np.rint(_ours(lambda x, m: ours(x), img, 0.0))
    np.testing.assert_array_equal(got, _pil(pil, img))


# Enhance ops: PIL rounds the degenerate image (luma, mean, smooth) to uint8 and truncates the
# blend; we blend in float: at most 1 level from truncation + (1 - f) * 0.5 from the rounding.
@pytest.mark.parametrize("fn, enhancer", [(ra.brightness, ImageEnhance.Brightness),
                                          (ra.color, ImageEnhance.Color),
                                          (ra.contrast, ImageEnhance.Contrast),
                                          (ra.sharpness, ImageEnhance.Sharpness)])
@pytest.mark.parametrize("factor", [0.05, 0.4, 0.95])
def test_enhance_ops_match_pil_within_two_levels(fn, enhancer, factor):
  img = _image(1)
  ours = _ours(fn, img, factor)
  want = _pil(lambda im: enhancer(im).enhance(factor), img)
  assert np.max(np.abs(ours - want)) <= 1.5 + 1e-3
  assert np.mean(np.abs(ours - want)) < 0.8  # no systematic offset


def _pil_affine(img, matrix):
  return _pil(lambda im: im.transform(im.size, Image.AFFINE, matrix, Image.NEAREST,
                                      fillcolor=(128, 128, 128)), img)


# Geometric ops, nearest sampling: the same pixels as PIL; the fill differs by half a level
# (PIL's grey is 128, ours 127.5). Magnitudes avoid sample points exactly on pixel edges,
# where float32 vs PIL's double may pick the neighbour.
@pytest.mark.parametrize("name, ours, matrix", [
    ("ShearX", lambda x: ra.shear_x(x, 0.17), (1, 0.17, 0, 0, 1, 0)),
    ("ShearY", lambda x: ra.shear_y(x, -0.23), (1, 0, 0, -0.23, 1, 0)),
    ("TranslateX", lambda x: ra.translate_x(x, 0.27), (1, 0, 0.27 * S, 0, 1, 0)),
    ("TranslateY", lambda x: ra.translate_y(x, -0.13), (1, 0, 0, 0, 1, -0.13 * S)),
])
def test_geometric_ops_equal_pil_affine(name, ours, matrix):
  img = _image(2)
  got = _ours(lambda x, m: ours(x), img, 0.0)
  np.testing.assert_allclose(got, _pil_affine(img, matrix), atol=0.5 + 1e-3, err_msg=name)


@pytest.mark.parametrize("degrees", [23.3, -17.9])
def test_rotate_equals_pil_rotate(degrees):
  img = _image(4)
  got = _ours(ra.rotate, img, degrees)
  want = _pil(lambda im: im.rotate(degrees, fillcolor=(128, 128, 128)), img)
  np.testing.assert_allclose(got, want, atol=0.5 + 1e-3)


def test_translate_by_whole_pixels_moves_content():
  img = _image(5)
  got = _ours(ra.translate_x, img, 0.25)  # 6 px left at 24 px
  np.testing.assert_allclose(got[:, :-6], img[:, 6:], atol=1e-4)
  np.testing.assert_array_equal(got[:, -6:], 127.5)


def test_ra_ranges_are_the_papers_table():
  want = {"AutoContrast": None, "Brightness": (0.05, 0.95), "Color": (0.05, 0.95),
          "Contrast": (0.05, 0.95), "Equalize": None, "Identity": None, "Posterize": (4, 9),
          "Rotate": (-30, 30), "Sharpness": (0.05, 0.95), "ShearX": (-0.3, 0.3),
          "ShearY": (-0.3, 0.3), "Solarize": (0, 1), "TranslateX": (-0.3, 0.3),
          "TranslateY": (-0.3, 0.3)}
  assert set(ra.RA_OPS) == set(want)
  for name, (_, lo, hi) in ra.RA_OPS.items():
    assert (lo, hi) == (want[name] or (0.0, 0.0)), name


@pytest.mark.slow
def test_randaugment_applies_two_drawn_ops_with_drawn_magnitudes():
  """Reproduces `randaugment` from its documented draws with the ops called directly."""
  x = jnp.asarray(_image(6), jnp.float32) / 255.0
  fns = list(ra.RA_OPS.values())
  for seed in range(6):
    rng = jax.random.key(seed)
    k_op, k_mag = jax.random.split(rng)
    index = np.asarray(jax.random.randint(k_op, (2,), 0, len(fns)))
    u = np.asarray(jax.random.uniform(k_mag, (2,)))
    want = x
    for i, v in zip(index, u):
      fn, lo, hi = fns[i]
      want = fn(want, lo + v * (hi - lo))
    np.testing.assert_allclose(jax.jit(ra.randaugment)(rng, x), want, atol=1e-6)


def test_randaugment_is_deterministic_per_key_and_varies_across_keys():
  x = jnp.asarray(_image(7), jnp.float32) / 255.0
  fn = jax.jit(ra.randaugment)
  np.testing.assert_array_equal(fn(jax.random.key(1), x), fn(jax.random.key(1), x))
  outs = [np.asarray(fn(jax.random.key(k), x)) for k in range(8)]
  assert len({o.tobytes() for o in outs}) > 4
  assert all(o.min() >= 0 and o.max() <= 1 for o in outs)


def test_cutout_is_a_grey_square_of_half_the_side_clipped_at_the_border():
  x = jnp.zeros((S, S, 3))
  sizes = set()
  for seed in range(40):
    rng = jax.random.key(seed)
    cy, cx = np.asarray(jax.random.randint(rng, (2,), 0, jnp.array([S, S])))
    out = np.asarray(jax.jit(ra.cutout)(rng, x))
    want = np.zeros((S, S, 3))
    want[max(0, cy - 6):cy + 6, max(0, cx - 6):cx + 6] = 0.5  # int(0.5 * 24) // 2 = 6
    np.testing.assert_array_equal(out, want)
    sizes.add(int((out[..., 0] > 0).sum()))
  assert 144 in sizes and min(sizes) < 144  # 12 x 12 inside, smaller at the border


def test_shift_pad_is_an_eighth_of_the_side():
  assert [ra.shift_pad(s) for s in (8, 16, 32, 96, 224)] == [1, 2, 4, 12, 28]


# Parameters as op arguments (`randaugment(num_ops, magnitude)`, `cutout(fraction)`).
# The paper's values at magnitude 27 of 30: 90 % of each range from low to high; the signed ops
# at +-90 % of their bound.
FIXED_27 = {"AutoContrast": [0.0], "Brightness": [0.86], "Color": [0.86], "Contrast": [0.86],
            "Equalize": [0.0], "Identity": [0.0], "Posterize": [8.5], "Rotate": [-27, 27],
            "Sharpness": [0.86], "ShearX": [-0.27, 0.27], "ShearY": [-0.27, 0.27],
            "Solarize": [0.9], "TranslateX": [-0.27, 0.27], "TranslateY": [-0.27, 0.27]}


@pytest.mark.slow  # about 8 CPU-seconds: two compilations of all 14 ops
def test_randaugment_at_a_fixed_magnitude_applies_one_op_at_the_papers_values():
  """Each output of randaugment(1, 27) is one RA op at its FIXED_27 value (computed apart,
  ops called directly); over 64 keys, several ops and both signs of a signed one occur."""
  x = jnp.asarray(_image(8, 12), jnp.float32) / 255.0
  keys = jax.random.split(jax.random.key(0), 64)
  outs = np.asarray(jax.jit(jax.vmap(lambda k: ra.randaugment(k, x, 1, 27)))(keys))
  pairs = [(name, v) for name, values in FIXED_27.items() for v in values]
  candidates = np.asarray(jax.jit(lambda x: jnp.stack(
      [ra.RA_OPS[name][0](x, v).astype(x.dtype) for name, v in pairs]))(x))
  seen = set()
  for out in outs:
    hits = [pair for pair, want in zip(pairs, candidates) if np.allclose(out, want, atol=1e-6)]
    assert hits, "not one op at its fixed value"
    seen.update(hits)
  assert len({name for name, _ in seen}) >= 8
  signed = [name for name, values in FIXED_27.items() if len(values) == 2]
  assert any(sum(n == name for n, _ in seen) == 2 for name in signed)


@pytest.mark.parametrize("fraction, side", [(0.25, 2), (0.5, 6), (0.75, 8)])
def test_cutout_fraction_covers_the_closed_form_square(fraction, side):
  """cutout(f) on a 12 x 12 image: a grey rectangle, (2 * (int(12 f) // 2))^2 pixels when
  inside the image, clipped (never larger) at the border."""
  x = jnp.zeros((12, 12, 3))
  keys = jax.random.split(jax.random.key(1), 200)
  cutout = registry.build(f"cutout({fraction})", registry.OPS).fn  # the view's op
  outs = np.asarray(jax.vmap(cutout, in_axes=(0, None))(keys, x))[..., 0]
  areas = set()
  for out in outs:
    box = out == ra.FILL
    rows, cols = box.any(1), box.any(0)
    np.testing.assert_array_equal(box, np.outer(rows, cols))  # one rectangle
    inside = not (rows[0] or rows[-1] or cols[0] or cols[-1])
    assert rows.sum() <= side and cols.sum() <= side
    if inside:
      assert rows.sum() == cols.sum() == side
    areas.add(int(box.sum()))
  assert max(areas) == side * side
