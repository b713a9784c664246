"""Tests for s4l_jax.data.sources and s4l_jax.data.tfds_sources."""
import os
import subprocess
import sys
import tarfile
import time
from unittest import mock

import numpy as np
from PIL import Image
import pytest

from s4l_jax.data import sources
from testing_utils import write_image_folder

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CIFAR_TAR = next((p for p in (os.path.join(_REPO, "..", "shared", "data", "cifar10_jpeg.tar.gz"),
                               "/work/shared/data/cifar10_jpeg.tar.gz") if os.path.exists(p)),
                  None)


def test_digits():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  train = sources.load_split("digits", "train")
  test = sources.load_split("digits", "test", image_size=16)
  assert train.images.shape == (1437, 32, 32, 3) and test.images.shape == (360, 16, 16, 3)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  assert train.images.max() == 255 and train.images.min() == 0
  np.testing.assert_array_equal(train.images[..., 0], train.images[..., 2])
  totals = np.bincount(datasets.load_digits().target)
  assert np.abs(np.bincount(train.labels) - 0.8 * totals).max() <= 1  # Stratified.
  np.testing.assert_array_equal(np.bincount(train.labels) + np.bincount(test.labels), totals)
  np.testing.assert_array_equal(sources.load_split("digits", "train").images, train.images)
  assert train.class_names == sources.class_names("digits") == [str(d) for d in range(10)]


def test_digits_splits_disjoint_and_cover():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  raw = np.round(datasets.load_digits().images * (255 / 16)).astype(np.uint8)
  native = [sources.load_split("digits", s, image_size=8) for s in ("train", "test")]
  both = np.concatenate([d.images[..., 0] for d in native])
  # Same multiset of images as the 1,797 originals (no example in both splits, none lost).
  assert sorted(a.tobytes() for a in both) == sorted(a.tobytes() for a in raw)


def _write_folder(root):
  rng = np.random.default_rng(0)
  for split, per_class in (("train", 3), ("test", 2)):
    for cls in ("cat", "dog"):
      os.makedirs(root / split / cls)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (12, 12, 3), np.uint8)
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(pixels).save(root / split / cls / f"{i}.{ext}")
  os.makedirs(root / "train" / "empty")
  Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / "train" / "dog" / "grey.jpeg")
  (root / "train" / "cat" / "bad.jpg").write_bytes(b"not a jpeg")
  (root / "train" / "dog" / "notes.txt").write_text("hello")


def test_folder(tmp_path):
  _write_folder(tmp_path)
  name = f"folder:{tmp_path}"
  train = sources.load_split(name, "train")
  assert train.class_names == ["cat", "dog", "empty"]
  assert train.images.shape == (7, 12, 12, 3) and train.images.dtype == np.uint8
  np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1, 1])
  assert train.filenames[0] == os.path.join("train", "cat", "0.jpg")
  assert sorted(os.path.basename(p) for p in train.skipped) == ["bad.jpg", "notes.txt"]
  png = np.asarray(Image.open(tmp_path / "train" / "cat" / "1.png"))
  np.testing.assert_array_equal(train.images[train.filenames.index("train/cat/1.png")], png)
  test = sources.load_split(name, "test", image_size=8)
  assert test.images.shape == (4, 8, 8, 3) and test.skipped == []
  assert test.class_names == train.class_names
  assert len(sources.class_names(name)) == 3


def test_folder_strict_and_layout_errors(tmp_path):
  _write_folder(tmp_path)
  with pytest.raises(ValueError, match="bad.jpg"):
    sources.load_split(f"folder:{tmp_path}", "train", strict=True)
  with pytest.raises(ValueError, match="does not exist.*<split>/<class>"):
    sources.load_split(f"folder:{tmp_path}", "validation")
  with pytest.raises(ValueError, match="does not exist"):
    sources.load_split(f"folder:{tmp_path / 'missing'}", "train")


def test_unknown_and_streamed_names():
  with pytest.raises(ValueError, match="tf.data"):
    sources.load_split("imagenet2012", "train")
  with pytest.raises(ValueError, match="Unknown"):
    sources.load_split("mnist", "train")


@pytest.mark.skipif(_CIFAR_TAR is None, reason="CIFAR-10 JPEG archive not found at "
                    "../shared/data/cifar10_jpeg.tar.gz (only on the project's machines)")
@pytest.mark.slow
def test_cifar10_jpeg_subset(tmp_path):
  per_class = {}
  with tarfile.open(_CIFAR_TAR) as tar:
    members = []
    for member in tar:
      parts = member.name.split("/")
      if member.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
        key = tuple(parts[-3:-1])
        if per_class.get(key, 0) < 20:
          per_class[key] = per_class.get(key, 0) + 1
          members.append(member)
      if len(per_class) == 20 and min(per_class.values()) == 20:
        break
    tar.extractall(tmp_path, members=members, filter="data")
  root = os.path.dirname(os.path.dirname(tmp_path / members[0].name))
  ds = sources.load_split(f"folder:{os.path.dirname(root)}", "train")
  assert ds.images.shape == (200, 32, 32, 3) and ds.skipped == []
  assert ds.class_names[0] == "airplane" and ds.class_names[-1] == "truck"
  np.testing.assert_array_equal(np.bincount(ds.labels), [20] * 10)


def test_no_tensorflow_import(tmp_path):
  _write_folder(tmp_path)
  code = ("import sys; from s4l_jax.data import sources, subsets, streams; "
          "sources.load_split('digits', 'train'); "
          f"sources.load_split('folder:{tmp_path}', 'train'); "
          "assert not [m for m in sys.modules if m.startswith('tensorflow')], 'TF imported'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=_REPO)


@pytest.mark.tf
def test_tfds_fails_fast_offline(tmp_path):
  from s4l_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
  for name, hint in (("cifar10", "download_and_prepare"), ("imagenet2012", "downloads/manual")):
    start = time.time()
    with pytest.raises(FileNotFoundError, match=hint):
      tfds_sources.check_prepared(name, str(tmp_path))
    assert time.time() - start < 10
  with pytest.raises(FileNotFoundError, match="TFDS_DATA_DIR"):
    sources.load_split("cifar10", "train", data_dir=str(tmp_path))


@pytest.mark.tf
def test_tfds_mock_cifar10(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=12), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    ds = sources.load_split("cifar10", "test", data_dir=str(tmp_path), image_size=16)
  assert ds.images.shape == (12, 16, 16, 3) and ds.images.dtype == np.uint8
  assert ds.labels.dtype == np.int32 and ds.labels.max() < 10
  assert len(ds.class_names) == 10 and len(ds.filenames) == 12


def _save(image, path, **kw):
  image.save(path, **kw)
  return str(path)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
  values = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
  path = _save(Image.fromarray(values), tmp_path / "deep.png")
  with Image.open(path) as image:
    assert image.mode in sources._SIXTEEN_BIT_MODES  # pylint: disable=protected-access
  pixels, _ = sources._decode(path, None)  # pylint: disable=protected-access
  want = np.round(values * (255 / 65535)).astype(np.uint8)
  np.testing.assert_array_equal(pixels, np.repeat(want[..., None], 3, -1))
  assert (pixels == 255).mean() < 0.05  # clipped, 97% of these pixels were 255


def test_exif_orientation_is_applied(tmp_path):
  """A landscape 16x8 photo (left half black, right white) tagged 'rotate 90 CW' (6) is read
  as the 8x16 portrait a viewer shows: black on top."""
  pixels = np.zeros((8, 16, 3), np.uint8)
  pixels[:, 8:] = 255
  exif = Image.Exif()
  exif[0x0112] = 6
  path = _save(Image.fromarray(pixels), tmp_path / "photo.jpg", exif=exif, quality=95)
  decoded, _ = sources._decode(path, None)  # pylint: disable=protected-access
  assert decoded.shape == (16, 8, 3)
  assert decoded[:6].mean() < 20 and decoded[10:].mean() > 235


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_become_black_and_opaque_ones_keep_their_colour(tmp_path, mode):
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[...] = (200, 200, 200)
  alpha = np.full((4, 4), 255, np.uint8)
  alpha[:2] = 0  # top half transparent (its stored colour: 200 grey)
  if mode == "P":
    pal = np.zeros((4, 4), np.uint8)  # colour 0: 200 grey
    pal[:2] = 1  # colour 1 is transparent
    image = Image.fromarray(pal, "P")
    image.putpalette([200, 200, 200, 0, 255, 0] + [0] * 762)
    path = _save(image, tmp_path / "p.png", transparency=1)
  else:
    stack = np.dstack([rgb, alpha]) if mode == "RGBA" else np.dstack([rgb[..., 0], alpha])
    path = _save(Image.fromarray(stack, mode), tmp_path / f"{mode}.png")
  decoded, _ = sources._decode(path, None)  # pylint: disable=protected-access
  np.testing.assert_array_equal(decoded[:2], 0)
  np.testing.assert_array_equal(decoded[2:], 200)


def test_hidden_files_are_ignored_even_when_strict(tmp_path):
  root = write_image_folder(tmp_path, per_class=(2, 1))
  with open(os.path.join(root, "train", "ant", ".DS_Store"), "wb") as f:
    f.write(b"\x00\x01 not an image")
  data = sources.load_split(f"folder:{root}", "train", strict=True)
  assert not data.skipped and not any(".DS_Store" in f for f in data.filenames)


def test_hidden_folders_are_no_classes(tmp_path):
  """A notebook's `.ipynb_checkpoints` (or `.git`) beside the class folders, in every split."""
  root = write_image_folder(tmp_path, per_class=(2, 1))
  for split in ("train", "test"):
    os.makedirs(os.path.join(root, split, ".ipynb_checkpoints"))
    with open(os.path.join(root, split, ".DS_Store"), "wb") as f:
      f.write(b"\x00\x01 not an image")
  assert sources.class_names(f"folder:{root}") == ["ant", "bee", "cat"]
  data = sources.load_split(f"folder:{root}", "test", strict=True)
  assert data.class_names == ["ant", "bee", "cat"] and len(data.labels) == 3
