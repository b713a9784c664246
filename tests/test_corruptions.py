"""Each corruption at each severity against ImageNet-C's definition of it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax.evaluators import corruptions as c

KEY = jax.random.PRNGKey(0)


def _corrupt(name, images, severity):
  param = c.parameter(name, severity, images.shape[1])
  return np.asarray(c.corrupt(name, jnp.asarray(images), param, KEY)).astype(np.float64) / 255


def _grey():
  return np.full((8, 32, 32, 3), 128, np.uint8)


def _uint8(x):
  """ImageNet-C's end: clip to [0, 1], store as uint8."""
  return np.round(np.clip(x, 0, 1) * 255) / 255


@pytest.mark.parametrize("severity", range(1, 6))
def test_gaussian_noise_matches_its_definition(severity):
  """Mean and std of x + N(0, c^2) (clipped, as uint8) equal numpy's sample of the same."""
  std = c.SEVERITIES["gaussian_noise"][severity - 1]
  x = 128 / 255
  reference = _uint8(x + np.random.default_rng(0).normal(0, std, _grey().shape))
  out = _corrupt("gaussian_noise", _grey(), severity)
  assert out.mean() == pytest.approx(reference.mean(), abs=0.005)
  assert out.std() == pytest.approx(reference.std(), rel=0.03)
  assert np.unique(out).size > 1


@pytest.mark.parametrize("severity", range(1, 6))
def test_shot_noise_matches_its_definition(severity):
  """Mean and std of Poisson(x c) / c (clipped, as uint8) equal numpy's sample of the same."""
  rate = c.SEVERITIES["shot_noise"][severity - 1]
  x = 128 / 255
  reference = _uint8(np.random.default_rng(0).poisson(x * rate, _grey().shape) / rate)
  out = _corrupt("shot_noise", _grey(), severity)
  assert out.mean() == pytest.approx(reference.mean(), abs=0.005)
  assert out.std() == pytest.approx(reference.std(), rel=0.03)


@pytest.mark.parametrize("severity", range(1, 6))
def test_contrast_scales_around_the_channel_mean(severity):
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), np.uint8)
  x = images / 255
  mean = x.mean(axis=(1, 2), keepdims=True)
  expected = np.round(np.clip((x - mean) * c.SEVERITIES["contrast"][severity - 1] + mean, 0, 1)
                      * 255) / 255
  np.testing.assert_allclose(_corrupt("contrast", images, severity), expected, atol=1 / 255 + 1e-9)


def test_pixelate_averages_blocks():
  """Severity 2 (c = 0.5) at 8 px: 4 px, each the mean of a 2x2 block, shown as that block."""
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), np.uint8)
  blocks = (images / 255).reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))
  expected = np.round(np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2) * 255) / 255
  np.testing.assert_allclose(_corrupt("pixelate", images, 2), expected, atol=1 / 255 + 1e-9)
  for severity, factor in enumerate(c.SEVERITIES["pixelate"], 1):  # int(S c) distinct pixels
    matrix = c.pixelate_matrix(224, factor)
    assert set(np.unique(c.box_resize_matrix(int(224 * factor), 224))) == {0.0, 1.0}  # nearest
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert len(np.unique(matrix.round(9), axis=0)) == int(224 * factor), severity


@pytest.mark.parametrize("severity", range(1, 6))
def test_blur_is_a_gaussian_of_the_severity_std(severity):
  """At 224 px (ImageNet-C's size): an interior row of the filter has variance sigma^2 and sums
  to 1; a constant image is left unchanged."""
  sigma = c.SEVERITIES["gaussian_blur"][severity - 1]
  row = c.parameter("gaussian_blur", severity, 224)[1][112]
  offsets = np.arange(224) - 112
  assert row.sum() == pytest.approx(1.0, abs=1e-5)
  assert (row * offsets ** 2).sum() == pytest.approx(sigma ** 2, rel=0.01)
  flat = np.full((1, 16, 16, 3), 77, np.uint8)
  np.testing.assert_allclose(_corrupt("gaussian_blur", flat, severity), 77 / 255)


def test_unknown_corruption_fails():
  with pytest.raises(ValueError, match="Unknown corruption 'fog'"):
    c.corrupt("fog", jnp.zeros((1, 8, 8, 3), jnp.uint8), c.parameter("contrast", 1, 8), KEY)


@pytest.mark.parametrize("severity", range(1, 6))
def test_pixelate_is_pils_box_down_and_up(severity):
  """ImageNet-C's pixelate: PIL resize(int(S c), BOX) then resize(S, BOX), on a float image."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(severity).random((37, 37)).astype(np.float32)
  low = int(37 * c.SEVERITIES["pixelate"][severity - 1])
  pil = Image.fromarray(image, mode="F").resize((low, low), Image.BOX).resize((37, 37), Image.BOX)
  matrix = c.pixelate_matrix(37, c.SEVERITIES["pixelate"][severity - 1])
  np.testing.assert_allclose(matrix @ image @ matrix.T, np.asarray(pil), atol=1e-5)


def test_jpeg_tables_follow_libjpeg_quality_scaling():
  luma, chroma = (np.asarray(t) for t in c.jpeg_tables(jnp.float32(50.0)))
  np.testing.assert_array_equal(luma, c._LUMA_TABLE)  # quality 50: the standard's tables
  np.testing.assert_array_equal(chroma, c._CHROMA_TABLE)
  assert np.all(np.asarray(c.jpeg_tables(jnp.float32(100.0))[0]) == 1)
  luma7 = np.asarray(c.jpeg_tables(jnp.float32(7.0))[0])  # scale floor(5000 / 7) = 714
  assert luma7[0, 0] == (16 * 714 + 50) // 100 and luma7.max() == 255


@pytest.mark.slow
@pytest.mark.parametrize("size, channels", [(32, 3), (30, 1)])
def test_jpeg_is_pils_encoder_and_decoder(size, channels):
  """ImageNet-C's jpeg: PIL save(quality=c) and reload; here 4:4:4 (subsampling=0). libjpeg's
  integer DCT and fixed-point colour conversion round a few coefficients the other way (a
  flipped coefficient moves its whole block by a quantiser step): the mean difference is a
  small fraction of the compression's own error (measured over 7 image sets, severities 1-5:
  at most 5.3 %; a wrong table or transform is far off, the tables' rule is tested above)."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(size)
  mode = "RGB" if channels == 3 else "L"
  smooth = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).convert(mode)
            .resize((size, size), Image.BILINEAR) for _ in range(4)]
  images = np.stack([np.asarray(im).reshape(size, size, channels) for im in smooth])
  for severity in (1, 3, 5):
    param = c.parameter("jpeg", severity, size)
    ours = np.asarray(c.corrupt("jpeg", jnp.asarray(images), param, jax.random.PRNGKey(0)))
    reference = []
    for im in smooth:
      buffer = io.BytesIO()
      im.save(buffer, "JPEG", quality=int(param[0]), subsampling=0)
      reference.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).reshape(
          size, size, channels))
    reference = np.stack(reference).astype(int)
    error = np.abs(ours.astype(int) - reference).mean()
    distortion = np.abs(reference - images).mean()
    assert distortion > 3 and error < 0.1 * distortion, (error, distortion)
