"""Tests for the tf.data view recipes and stream (and JAX/TF sampler parity)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from s4l_jax.data import tf_views
from s4l_jax.data import views

NUM_IMAGES = 12


def _level(i):
  return 10 + 20 * i


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
  """train/<class>/*.jpg, 224 px; image i is a flat grey of level 10 + 20 i."""
  root = tmp_path_factory.mktemp("jpegs")
  for i in range(NUM_IMAGES):
    d = root / "train" / f"class{i % 3}"
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((224, 224, 3), _level(i), np.uint8)).save(
        d / f"img{i:02d}.jpg", quality=95)
  return str(root)


def _ids(images):
  """Recovers image ids from flat-grey eval views in [-1, 1]."""
  levels = (images.mean(axis=(1, 2, 3)) + 1) / 2 * 255
  return np.round((levels - 10) / 20).astype(int).tolist()


def _ks(a, b):
  """Two-sample Kolmogorov-Smirnov statistic."""
  grid = np.sort(np.concatenate([a, b]))
  cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)
  return np.abs(cdf(a) - cdf(b)).max()


def _features(image, seed=(1, 2)):
  return {"image": tf.constant(image), "label": tf.constant(0, tf.int64),
          "seed": tf.constant(seed, tf.int64)}


def test_tf_rotate4_matches_np_rot90():
  img = np.random.RandomState(0).randint(0, 256, (12, 12, 3)).astype(np.uint8)
  fn = tf_views.make_tf_view_fn("rotate4", image_size=12, crop="none",
                                decode=False)
  out = fn(_features(img))
  x = out["image"].numpy()
  assert x.shape == (4, 12, 12, 3)
  np.testing.assert_array_equal(out["rotation"], [0, 1, 2, 3])
  for k in range(4):
    np.testing.assert_array_equal(x[k], np.rot90(x[0], k))
  src = img / 255 * 2 - 1
  assert (np.allclose(x[0], src, atol=1e-6)
          or np.allclose(x[0], src[:, ::-1], atol=1e-6))


@pytest.mark.parametrize("h,w", [(224, 224), (180, 300)])
def test_jax_box_sampler_matches_tf(h, w):
  n = 10_000
  seeds = tf.random.experimental.stateless_split([0, 0], n)
  sample = tf.function(lambda s: tf.map_fn(
      lambda sd: tf_views.sample_box(sd, [h, w, 3])[1][:2], s,
      fn_output_signature=tf.int32, parallel_iterations=64))
  tf_hw = sample(seeds).numpy().astype(np.float64)
  jax_hw = np.asarray(views.inception_crop_boxes(jax.random.key(1), n, h, w),
                      np.float64)[:, 2:]
  for name, stat in (("area", lambda s: s[:, 0] * s[:, 1] / (h * w)),
                     ("aspect", lambda s: s[:, 1] / s[:, 0]),
                     ("height", lambda s: s[:, 0] / h)):
    ks = _ks(stat(tf_hw), stat(jax_hw))
    assert ks < 0.05, (name, ks)  # 0.05 >> 0.027 (alpha=0.001 at n=10k).


def test_tf_multi_crop_matches_jax_crop_and_resize():
  img = np.random.RandomState(0).randint(0, 256, (64, 48, 3)).astype(np.uint8)
  seeds = [tf.constant([i, 7], tf.int64) for i in range(4)]
  got = tf_views._multi_crop(tf.constant(img), seeds, 16, views.S4L_AREA,
                             views.S4L_ASPECT).numpy()
  for seed, crop in zip(seeds, got):
    begin, size, _ = tf_views.sample_box(seed, [64, 48, 3])
    box = jnp.array([begin[0], begin[1], size[0], size[1]])
    want = views.crop_and_resize(jnp.asarray(img, jnp.float32) / 255, box, 16)
    np.testing.assert_allclose(crop, want, atol=1e-4)


def test_tf_exemplar8_decodes_once_and_differs():
  img = np.random.RandomState(0).randint(0, 256, (40, 40, 3)).astype(np.uint8)
  fn = tf_views.make_tf_view_fn("exemplar8", image_size=16, crop="inception",
                                decode=True)
  jpeg = tf.io.encode_jpeg(tf.constant(img))
  out = fn({"image": jpeg, "label": tf.constant(3, tf.int64),
            "seed": tf.constant([5, 6], tf.int64)})["image"].numpy()
  assert out.shape == (8, 16, 16, 3)
  assert -1 <= out.min() and out.max() <= 1
  assert len({v.tobytes() for v in out}) == 8


@pytest.mark.parametrize("view,extra,size", [
    ("train", (), 224), ("rotate4", (4,), 224), ("exemplar8", (8,), 64),
    ("simclr2", (2,), 64), ("eval", (), 224)])
def test_stream_every_recipe_shapes(jpeg_folder, view, extra, size):
  it = tf_views.build_tfds_stream(
      jpeg_folder, "train", view=view, image_size=size, crop="inception",
      global_batch=4, seed=0, process_index=0, process_count=2)
  batch = next(it)
  assert batch["image"].shape == (2,) + extra + (size, size, 3)
  assert batch["image"].dtype == np.float32
  assert -1 <= batch["image"].min() and batch["image"].max() <= 1
  assert batch["label"].shape == (2,)
  if view == "rotate4":
    np.testing.assert_array_equal(batch["rotation"], [[0, 1, 2, 3]] * 2)


def test_stream_deterministic(jpeg_folder):
  make = lambda: next(tf_views.build_tfds_stream(
      jpeg_folder, "train", view="train", image_size=32, crop="inception",
      global_batch=4, seed=3, process_index=0, process_count=1))
  a, b = make(), make()
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])


def test_host_shards_disjoint_and_covering(jpeg_folder):
  shards = []
  for p in range(3):
    ids = []
    for batch in tf_views.build_tfds_stream(
        jpeg_folder, "train", view="eval", image_size=32, crop="none",
        global_batch=6, seed=0, process_index=p, process_count=3):
      ids += _ids(batch["image"])
      np.testing.assert_array_equal(batch["label"], [
          i % 3 for i in _ids(batch["image"])])
    shards.append(set(ids))
    assert len(ids) == len(shards[-1])
  for a, b in itertools.combinations(shards, 2):
    assert not a & b
  assert set().union(*shards) == set(range(NUM_IMAGES))


def test_filter_filenames(jpeg_folder):
  keep = {"img01.jpg", "img05.jpg", "img10.jpg"}
  ids = []
  for batch in tf_views.build_tfds_stream(
      jpeg_folder, "train", view="eval", image_size=32, crop="none",
      global_batch=2, seed=0, process_index=0, process_count=1,
      filter_filenames=keep):
    ids += _ids(batch["image"])
  assert sorted(ids) == [1, 5, 10]


def test_unknown_view_raises():
  with pytest.raises(ValueError, match="exemplar8"):
    tf_views.make_tf_view_fn("bad", image_size=8, crop="none", decode=False)
