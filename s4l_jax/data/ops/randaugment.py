"""FixMatch's augmentation: RandAugment (RA), Cutout and the weak shift, as JAX ops on one
float image.

Every op takes one image (H, W, 3) float in [0, 1] and returns the same shape; the view
machinery vmaps them over crops. Registered: `randaugment(num_ops=2, magnitude=None)`,
`cutout(fraction=0.5)`, `shift(fraction=0.125)`.

RandAugment as the FixMatch paper (Sohn et al. 2020, Table 12) defines it: for each image,
`num_ops` ops drawn uniformly (with replacement) from the 14 below, each with its own
magnitude drawn uniformly from its range (FixMatch's "RA with random magnitude"), applied in
turn. With a fixed `magnitude` m on a 0..`MAX_MAGNITUDE` = 30 scale (Noisy Student: 27),
every op takes the point m / 30 of its range from low to high, and the signed ops (Rotate,
ShearX/Y, TranslateX/Y: ranges symmetric about 0) +-m / 30 of their bound with a random sign,
as AutoAugment negates them half the time. This reading keeps every op in the paper's ranges;
the released Noisy Student code (`google-research/noisystudent` `randaugment.py`) divides
magnitudes by 10 (`_MAX_LEVEL`), so its 27 extrapolates past AutoAugment's ranges (rotations
of 81 degrees). Ranges, in the paper's units (`RA_OPS`):

  AutoContrast  -                 Equalize    -              Identity  -
  Brightness    B in [0.05, 0.95]  Color    C in [0.05, 0.95]  Contrast  C in [0.05, 0.95]
  Sharpness     S in [0.05, 0.95]  Posterize B in {4, ..., 8} bits (uniform integer)
  Rotate        theta in [-30, 30] degrees (counter-clockwise)
  ShearX/Y      R in [-0.3, 0.3]   TranslateX/Y  lambda in [-0.3, 0.3] of the width / height
  Solarize      T in [0, 1]: levels q >= 256 T (0..255 scale) become 255 - q

Then `cutout`: a grey (0.5) square of side `fraction` (default 0.5) of the image, centred on a
uniform pixel and clipped at the border (so up to half the side is covered), as the released
code's `cutout_numpy` (size 16 at 32 px, fill 0 in its [-1, 1] scale = grey).

Semantics follow PIL, which every FixMatch implementation calls on uint8 images:
* AutoContrast, Equalize, Posterize, Solarize are `PIL.ImageOps`' lookup tables on the levels
  q = round(255 x) (quantised first, as PIL's images are uint8); results are levels / 255.
* Brightness, Color, Contrast, Sharpness are `PIL.ImageEnhance`: `degenerate + f (x -
  degenerate)` with degenerate black, the luma (ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B),
  the mean luma, and the 3x3 SMOOTH filter (weights 1, centre 5, / 13; border pixels kept);
  computed in float without PIL's rounding of the degenerate and truncation of the blend
  (differences of up to 1-2 levels), clipped to [0, 1].
* Rotate, Shear, Translate are PIL's AFFINE transform with nearest sampling: output pixel
  (x, y) reads input pixel floor(M (x + 0.5, y + 0.5)), shears about the top-left corner,
  rotation about the centre; outside the image is grey 0.5 (the released code's RGBA fill).
Differences from the released CIFAR code (`libml/augment.py` RAMC), which the paper's text does
not mention: it applies each of the 2 ops with probability 0.5 and uses AutoAugment's ranges
(enhance factors 0.1..1.9, translate up to 10 px). Here: the paper's table, always applied.
"""
import math

import jax
import jax.numpy as jnp

from s4l_jax.data.ops import crops, registry

MAX_MAGNITUDE = 30  # the top of the fixed-magnitude scale (Noisy Student's 27 is 90 % of it)
FILL = 0.5  # grey, for pixels from outside the image and for Cutout
LUMA = (0.299, 0.587, 0.114)  # PIL's convert("L")


def _levels(x):
  """float [0, 1] -> int32 levels 0..255 (round half to even)."""
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.int32)


def _per_channel(fn, x):
  """Applies `fn` (int32 (H, W) -> (H, W)) to each channel's levels; returns float [0, 1]."""
  q = _levels(x)
  return jnp.stack([fn(q[..., c]) for c in range(x.shape[-1])], axis=-1) / 255.0


def identity(x, _=None):
  return x


def auto_contrast(x, _=None):
  """`ImageOps.autocontrast`: each channel's levels [lo, hi] -> floor(255 (q - lo) / (hi - lo))."""
  def channel(q):
    lo, hi = q.min(), q.max()
    return jnp.where(hi > lo, (q - lo) * 255 // jnp.maximum(hi - lo, 1), q)
  return _per_channel(channel, x)


def equalize(x, _=None):
  """`ImageOps.equalize` per channel: lut[i] = (step // 2 + #{q < i}) // step, step = (N -
  #{q = max q}) // 255; identity when step is 0 (at most one level, or too few pixels)."""
  def channel(q):
    hist = jnp.bincount(q.ravel(), length=256)
    step = (q.size - hist[q.max()]) // 255
    lut = (step // 2 + jnp.cumsum(hist) - hist) // jnp.maximum(step, 1)
    return jnp.where(step > 0, jnp.clip(lut, 0, 255)[q], q)
  return _per_channel(channel, x)


def posterize(x, bits):
  """`ImageOps.posterize`: keeps the top floor(bits) bits (in 1..8) of each level."""
  drop = 8 - jnp.clip(jnp.floor(bits), 1, 8).astype(jnp.int32)
  return _per_channel(lambda q: (q >> drop) << drop, x)


def solarize(x, threshold):
  """`ImageOps.solarize(img, 256 threshold)`: levels q >= 256 threshold become 255 - q."""
  return _per_channel(lambda q: jnp.where(q >= 256.0 * threshold, 255 - q, q), x)


def _blend(degenerate, x, factor):
  return jnp.clip(degenerate + factor * (x - degenerate), 0.0, 1.0)


def _luma(x):
  """(H, W, 3) -> (H, W, 1)."""
  return x @ jnp.array(LUMA, x.dtype)[:, None]


def brightness(x, factor):
  """`ImageEnhance.Brightness`: blend with black."""
  return _blend(jnp.zeros_like(x), x, factor)


def color(x, factor):
  """`ImageEnhance.Color`: blend with the luma image."""
  return _blend(_luma(x), x, factor)


def contrast(x, factor):
  """`ImageEnhance.Contrast`: blend with the mean luma."""
  return _blend(jnp.mean(_luma(x)), x, factor)


def sharpness(x, factor):
  """`ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image (border pixels kept)."""
  h, w = x.shape[:2]
  weights = jnp.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
  smooth = sum(weights[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))
  rows, cols = jnp.arange(h)[:, None, None], jnp.arange(w)[None, :, None]
  inner = (rows >= 1) & (rows <= h - 2) & (cols >= 1) & (cols <= w - 2)
  return _blend(jnp.where(inner, smooth, x), x, factor)


def affine(x, matrix, fill=FILL):
  """PIL `Image.transform(size, AFFINE, matrix)`, nearest: output (x, y) reads the input at
  floor((a, b, c; d, e, f) (x + 0.5, y + 0.5, 1)); `fill` outside the image."""
  a, b, c, d, e, f = matrix
  h, w = x.shape[:2]
  xs = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
  ys = jnp.arange(h, dtype=jnp.float32)[:, None] + 0.5
  col = jnp.floor(a * xs + b * ys + c).astype(jnp.int32)
  row = jnp.floor(d * xs + e * ys + f).astype(jnp.int32)
  inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
  out = x[jnp.clip(row, 0, h - 1), jnp.clip(col, 0, w - 1)]
  return jnp.where(inside[..., None], out, fill)


def rotate(x, degrees):
  """PIL `img.rotate(degrees)`: counter-clockwise about the centre (W / 2, H / 2)."""
  h, w = x.shape[:2]
  t = jnp.deg2rad(degrees)
  cos, sin = jnp.cos(t), jnp.sin(t)
  cx, cy = w / 2.0, h / 2.0
  return affine(x, (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy))


def shear_x(x, rate):
  return affine(x, (1.0, rate, 0.0, 0.0, 1.0, 0.0))


def shear_y(x, rate):
  return affine(x, (1.0, 0.0, 0.0, rate, 1.0, 0.0))


def translate_x(x, fraction):
  """Shifts the content left by `fraction` of the width (right when negative)."""
  return affine(x, (1.0, 0.0, fraction * x.shape[1], 0.0, 1.0, 0.0))


def translate_y(x, fraction):
  return affine(x, (1.0, 0.0, 0.0, 0.0, 1.0, fraction * x.shape[0]))


# The FixMatch paper's RA ops: name -> (fn(x, magnitude), low, high); a magnitude is drawn
# uniformly in [low, high) (Posterize: floor of [4, 9) = an integer 4..8).
RA_OPS = {
    "AutoContrast": (auto_contrast, 0.0, 0.0),
    "Brightness": (brightness, 0.05, 0.95),
    "Color": (color, 0.05, 0.95),
    "Contrast": (contrast, 0.05, 0.95),
    "Equalize": (equalize, 0.0, 0.0),
    "Identity": (identity, 0.0, 0.0),
    "Posterize": (posterize, 4.0, 9.0),
    "Rotate": (rotate, -30.0, 30.0),
    "Sharpness": (sharpness, 0.05, 0.95),
    "ShearX": (shear_x, -0.3, 0.3),
    "ShearY": (shear_y, -0.3, 0.3),
    "Solarize": (solarize, 0.0, 1.0),
    "TranslateX": (translate_x, -0.3, 0.3),
    "TranslateY": (translate_y, -0.3, 0.3),
}


def _signed(lo: float, hi: float) -> bool:
  """A range symmetric about 0 (Rotate, Shear, Translate): AutoAugment negates at random."""
  return lo == -hi and hi > 0


def randaugment(rng, x, num_ops: int = 2, magnitude: float | None = None):
  """`num_ops` ops of `RA_OPS`, each drawn uniformly, in turn: with a uniform magnitude in its
  range (`magnitude=None`), else at `magnitude` / `MAX_MAGNITUDE` of its range (signed ops:
  of their bound, with a random sign)."""
  k_op, k_mag = jax.random.split(rng)
  index = jax.random.randint(k_op, (num_ops,), 0, len(RA_OPS))
  if magnitude is None:  # draws: u ~ U(0, 1) per op
    draws = jax.random.uniform(k_mag, (num_ops,))
    at = lambda lo, hi, u: lo + u * (hi - lo)
  else:  # draws: the sign of the signed ops
    r = magnitude / MAX_MAGNITUDE
    draws = jnp.where(jax.random.bernoulli(k_mag, shape=(num_ops,)), 1.0, -1.0)
    at = lambda lo, hi, sign: sign * (r * hi) if _signed(lo, hi) else lo + r * (hi - lo)
  branches = [lambda x, d, fn=fn, lo=lo, hi=hi: fn(x, at(lo, hi, d)).astype(x.dtype)
              for fn, lo, hi in RA_OPS.values()]
  for i in range(num_ops):
    x = jax.lax.switch(index[i], branches, x, draws[i])
  return x


def cutout(rng, x, fraction: float = 0.5, fill: float = FILL):
  """`fill` on rows [cy - s, cy + s) and columns [cx - s, cx + s) clipped to the image, with
  s = int(fraction * min(H, W)) // 2 and (cy, cx) a uniform pixel (`cutout_numpy`)."""
  h, w = x.shape[:2]
  half = int(fraction * min(h, w)) // 2
  cy, cx = jax.random.randint(rng, (2,), 0, jnp.array([h, w]))
  rows, cols = jnp.arange(h)[:, None, None], jnp.arange(w)[None, :, None]
  box = (rows >= cy - half) & (rows < cy + half) & (cols >= cx - half) & (cols < cx + half)
  return jnp.where(box, fill, x)


def shift_pad(size: int, fraction: float = 0.125) -> int:
  """Reflect padding of `shift` on side `size`: round(`fraction` x size), at least 1 (FixMatch's
  weak translation, up to 12.5 % of the side: 4 px at 32)."""
  return max(1, int(math.floor(fraction * size + 0.5)))


@registry.register_op("randaugment")
def randaugment_op(num_ops: int = 2, magnitude: float | None = None):
  """`num_ops` RandAugment ops, at random magnitudes (None) or at `magnitude` (0..30)."""
  registry.check(isinstance(num_ops, int) and num_ops >= 1,
                 f"randaugment: num_ops must be an int >= 1, got {num_ops!r}")
  registry.check(magnitude is None or 0 <= magnitude <= MAX_MAGNITUDE,
                 f"randaugment: magnitude must be None or in [0, {MAX_MAGNITUDE}], got "
                 f"{magnitude!r}")
  return registry.Op(lambda rng, x: randaugment(rng, x, num_ops, magnitude))


@registry.register_op("cutout")
def cutout_op(fraction: float = 0.5):
  """A grey square of side `fraction` of the short side, clipped at the border."""
  registry.check(0 < fraction <= 1, f"cutout: fraction must be in (0, 1], got {fraction!r}")
  return registry.Op(lambda rng, x: cutout(rng, x, fraction))


@registry.register_op("shift")
def shift_op(fraction: float = 0.125):
  """Reflect pad by `shift_pad(side, fraction)`, random window of the crop's size."""
  registry.check(0 < fraction <= 1, f"shift: fraction must be in (0, 1], got {fraction!r}")
  return registry.Op(
      lambda rng, x: crops.pad_crop(rng, x, x.shape[0], shift_pad(x.shape[0], fraction)))
