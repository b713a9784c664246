"""TfdsPipeline on an image folder, and the host-crop / device split of the views."""
import json
import os
from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from s4l_jax import runner
from s4l_jax.data import factory
from s4l_jax.data import tf_views, views
from s4l_jax.data.ops import resize
from testing_utils import load_config, tiny

pytestmark = pytest.mark.tf

CLASSES = ("ant", "bee", "cat")
NUM_TRAIN, NUM_TEST, SIZE = 12, 5, 32


@pytest.fixture(scope="module", name="folder")
def folder_fixture(tmp_path_factory):
  """train/test/<class>/*.jpg at 40 px; test image j of class c has grey level 15 * (3j + c)."""
  root = tmp_path_factory.mktemp("jpegs")
  rng = np.random.default_rng(0)
  for split, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
    for c, name in enumerate(CLASSES):
      os.makedirs(root / split / name)
      for i in range(n):
        if split == "test":
          pixels = np.full((40, 40, 3), 15 * (3 * i + c), np.uint8)
        else:
          pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / split / name / f"{i:03d}.jpg", quality=95)
  return str(root)


def _config(folder, name="supervised", labels="2perclass"):
  config = tiny(load_config(name, f"dataset=folder:{folder},labels={labels}"), steps=3,
                batch=8, image_size=SIZE)
  config.input.pipeline = "tfdata"
  config.input.eval_batch_size = 8
  return config


@pytest.mark.slow
def test_runner_trains_and_evaluates(folder, tmp_path):
  config = _config(folder)
  results = runner.run(config, str(tmp_path))
  assert os.path.exists(tmp_path / "results.json")
  assert results["num_labeled"] == 6 and results["steps"] == 3
  on_disk = json.load(open(tmp_path / "results.json"))
  assert on_disk["num_validation"] == 3  # round(10% of 12) per class
  assert on_disk["evals"]["test"]["top1"] == on_disk["top1"]
  assert on_disk["evals"]["validation"]["top1"] == on_disk["validation_top1"]


def test_labeled_subset_and_batches(folder):
  data = factory.make_pipeline(_config(folder, "s4l_rotation"))
  assert data.num_labeled == 6 and data.class_names == list(CLASSES)
  labels = data._source.scan("train")[0]  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.bincount(labels[data.labeled_indices]), [2, 2, 2])
  assert data.images_per_step == 8 * 4 * 2 and not data.views_on_device
  batch = data.train_batch(0)
  assert batch["labeled"]["image"].shape == (8, SIZE, SIZE, 3)
  assert batch["labeled"]["image"].dtype == np.uint8
  assert set(batch["labeled"]["label"]) == {0, 1, 2}  # one epoch of the subset


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_counts_every_image_once(folder, process_count):
  config = _config(folder)
  seen, counts = [], set()
  for p in range(process_count):
    batches = list(factory.make_pipeline(config, p, process_count).eval_batches(6))
    counts.add(len(batches))
    for b in batches:
      assert b["image"].shape == (6 // process_count, SIZE, SIZE, 3)
      levels = b["image"][b["mask"]].mean(axis=(1, 2, 3)) / 15
      seen += [(round(v), y) for v, y in zip(levels, b["label"][b["mask"]])]
  assert len(counts) == 1  # equal batch counts on every host
  expected = [(3 * i + c, c) for i in range(NUM_TEST) for c in range(3)]
  assert sorted(seen) == sorted(expected)


def test_folder_eval_crop_keeps_size_s_images_on_both_pipelines(tmp_path):
  """One eval crop for both pipelines: on a folder of S x S images the folder family's
  default (`resize_small_crop(1.0)`) is the identity on each, so each evaluates its decoded
  images as they are. (The two decoders still differ: TensorFlow's default JPEG IDCT is
  libjpeg's fast integer one, PIL's the accurate one, up to 5 levels apart on these files.)"""
  rng = np.random.default_rng(1)
  for split in ("train", "test"):
    for name in CLASSES:
      os.makedirs(tmp_path / split / name)
      for i in range(2):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            tmp_path / split / name / f"{i}.jpg", quality=90)
  config = _config(str(tmp_path), labels="all")
  config.input.validation = "0"
  data = factory.make_pipeline(config)
  decoded = [tf.io.decode_jpeg(tf.io.read_file(path), channels=3).numpy()
             for path in data._source._paths["test"]]  # pylint: disable=protected-access
  np.testing.assert_array_equal(next(data.eval_batches(8))["image"][:6], decoded)
  config.input.pipeline = "memory"
  memory = factory.make_pipeline(config)
  np.testing.assert_array_equal(next(memory.eval_batches(8))["image"][:6], memory.test.images)


@pytest.mark.parametrize("process_count", [1, 2])
def test_validation_is_held_out_and_evaluated_once(folder, process_count):
  config = _config(folder, "s4l_rotation")
  pipes = [factory.make_pipeline(config, p, process_count) for p in range(process_count)]
  data = pipes[0]
  labels, _ = data._source.scan("train")  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.bincount(labels[data.validation_indices]), [1, 1, 1])
  assert not np.intersect1d(data.validation_indices, data.labeled_indices).size
  np.testing.assert_array_equal(data.source_indices["unlabeled"],
                                np.setdiff1d(np.arange(3 * NUM_TRAIN), data.validation_indices))
  per_host = [list(p.eval_batches(2, "validation")) for p in pipes]
  assert len({len(b) for b in per_host}) == 1
  got = np.concatenate([b["image"][b["mask"]] for host in per_host for b in host])
  single = factory.make_pipeline(config) if process_count > 1 else data
  every = np.concatenate([b["image"][b["mask"]] for b in single.eval_batches(8, "train")])
  np.testing.assert_array_equal(got, every[data.validation_indices])  # in index order


@pytest.mark.parametrize("process_count", [1, 2])
def test_labeled_split_is_the_labeled_set_once(folder, process_count):
  """eval split "labeled" (kNN's and the probes' training set): each labeled image once, in
  index order, with its label, over all hosts."""
  config = _config(folder)
  pipes = [factory.make_pipeline(config, p, process_count) for p in range(process_count)]
  batches = [b for p in pipes for b in p.eval_batches(2, "labeled")]
  images = np.concatenate([b["image"][b["mask"]] for b in batches])
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  data = factory.make_pipeline(config) if process_count > 1 else pipes[0]
  every = np.concatenate([b["image"][b["mask"]] for b in data.eval_batches(8, "train")])
  np.testing.assert_array_equal(images, every[np.sort(data.labeled_indices)])
  truth = data._source.scan("train")[0]  # pylint: disable=protected-access
  np.testing.assert_array_equal(labels, truth[np.sort(data.labeled_indices)])


def test_train_batch_resumes_exactly(folder):
  config = _config(folder, "s4l_exemplar")
  data = factory.make_pipeline(config)
  batches = [data.train_batch(s) for s in range(5)]  # crosses labeled epochs (6 examples, batch 8)
  assert batches[0]["unlabeled"]["image"].shape == (8, 8, SIZE, SIZE, 3)
  restarted = factory.make_pipeline(config)
  for step in (3, 4):
    again = restarted.train_batch(step)
    for name in ("labeled", "unlabeled"):
      for key in ("image", "label"):
        np.testing.assert_array_equal(again[name][key], batches[step][name][key])


def _host(view, image, crop, seed=(3, 4)):
  """The host crops of one uint8 image as a batch of one."""
  features = {"image": tf.constant(image), "label": tf.constant(0),
              "seed": tf.constant(seed, tf.int64)}
  host = tf_views.make_tf_crop_fn(view, image_size=SIZE, crop=crop, decode=False)(features)
  return {k: v.numpy()[None] for k, v in host.items()}


@pytest.mark.parametrize("crop", ["pad_crop", "inception"])
@pytest.mark.slow
def test_rotate4_host_crop_and_device_view(crop):
  image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  host = _host("rotate4", image, crop)
  assert host["image"].dtype == np.uint8 and host["image"].shape == (1, SIZE, SIZE, 3)
  out = views.make_view_fn("rotate4", image_size=SIZE, crop=crop, host_cropped=True)(
      jax.random.key(0), host)
  np.testing.assert_array_equal(out["rotation"], [[0, 1, 2, 3]])
  # Device flip + rot90 of the host crop == tf.image.rot90 of the (maybe flipped) crop.
  unit = tf.constant(host["image"][0], tf.float32) / 255.0
  flipped = np.allclose(out["image"][0, 0], unit.numpy()[:, ::-1] * 2 - 1, atol=1e-6)
  unit = tf.reverse(unit, [1]) if flipped else unit
  tf_rot = np.stack([tf.image.rot90(unit, k).numpy() for k in range(4)]) * 2 - 1
  np.testing.assert_allclose(out["image"][0], tf_rot, atol=1e-6)


@pytest.mark.slow
def test_exemplar8_canvas_finished_on_device():
  image = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  hosts = [_host("exemplar8", image, "inception", (s, 1)) for s in range(8)]
  hosts = {k: np.concatenate([h[k] for h in hosts]) for k in hosts[0]}
  c = tf_views.CANVAS
  assert hosts["image"].shape == (8, c, c, 3) and hosts["boxes"].shape == (8, 8, 4)
  np.testing.assert_array_equal(hosts["image"][:, :40, :40], np.broadcast_to(image, (8, 40, 40, 3)))
  # Device resizes of the host boxes == tf.image.resize of those crops (exact up to fp).
  crops = jax.vmap(jax.vmap(resize.gather_crop_and_resize, in_axes=(None, 0, None)),
                   in_axes=(0, 0, None))(hosts["image"], hosts["boxes"], SIZE) / 255
  tf_crops = [tf.image.resize(image[y:y + h, x:x + w], [SIZE, SIZE]) / 255
              for y, x, h, w in hosts["boxes"][0]]
  np.testing.assert_allclose(crops[0], np.stack(tf_crops), atol=1e-5)
  out = np.asarray(views.make_view_fn("exemplar8", image_size=SIZE, crop="inception",
                                      host_cropped=True)(jax.random.key(0), hosts)["image"])
  assert out.shape == (8, 8, SIZE, SIZE, 3) and np.abs(out).max() <= 1
  # Flips: some patches flipped, some not, relative to the raw crop (hue noise aside).
  raw = np.asarray(crops) * 2 - 1
  grey = lambda x: x.mean(-1)
  d_same = np.abs(grey(out) - grey(raw)).mean(axis=(2, 3))
  d_flip = np.abs(grey(out) - grey(raw)[..., ::-1]).mean(axis=(2, 3))
  flipped = (d_flip < d_same).mean()
  assert 0.2 < flipped < 0.8


def test_imagenet2012_mock_train_batch(tmp_path):
  """TFDS-builder source under mock data (train stream only: mocks have no split sizes)."""
  config = tiny(load_config("supervised", "dataset=imagenet2012,labels=all"), batch=4,
                image_size=SIZE)
  config.data_dir = str(tmp_path)
  config.input.validation = "0"  # 1 per class needs 1,000 images
  with tfds.testing.mock_data(num_examples=12), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    data = factory.make_pipeline(config)
    batch = data.train_batch(2)["labeled"]
  assert data.num_labeled == 12 and data.num_classes == 1000
  assert batch["image"].shape == (4, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8


@pytest.mark.parametrize("labels,per_class", [("1pct", 13), ("1pct_proportional", 1)])
def test_imagenet2012_mock_one_percent_is_13_per_class(tmp_path, labels, per_class):
  """S4L's 1 % protocol on a mocked imagenet2012: 14 images per class, the default validation
  set (1 per class) held out, exactly 13 labeled per class (proportional: round(0.14) -> 1)."""
  jpeg = tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy()
  train_labels = np.random.default_rng(0).permutation(np.repeat(np.arange(1000), 14))

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    n = train_labels.size
    return tf.data.Dataset.from_tensor_slices({
        "image": [jpeg] * n, "label": train_labels.astype(np.int64),
        "file_name": [f"n{i:08d}.JPEG" for i in range(n)]})

  config = tiny(load_config("supervised", f"dataset=imagenet2012,labels={labels}"), batch=4,
                image_size=SIZE)
  config.data_dir = str(tmp_path)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    data = factory.make_pipeline(config)
  np.testing.assert_array_equal(np.bincount(train_labels[data.labeled_indices], minlength=1000),
                                per_class)
  np.testing.assert_array_equal(np.bincount(train_labels[data.validation_indices],
                                            minlength=1000), 1)
  assert not np.intersect1d(data.labeled_indices, data.validation_indices).size


@pytest.mark.slow
def test_pseudo_labels_on_the_tfdata_path(folder, tmp_path):
  """Teacher export -> pseudo-label every train image (tf.data eval view, by index) -> student."""
  teacher = str(tmp_path / "teacher")
  runner.run(_config(folder), teacher)
  student = _config(folder)
  student.teacher = os.path.join(teacher, "export")
  results = runner.run(student, str(tmp_path / "student"))
  assert results["num_labeled"] == 3 * NUM_TRAIN - 3  # every train image but validation
  with np.load(tmp_path / "student" / "pseudo_labels.npz") as f:
    pseudo = f["labels"]
  from s4l_jax import export  # pylint: disable=g-import-not-at-top
  predict, _ = export.load_predict(os.path.join(teacher, "export"))
  images = np.concatenate([b["image"][b["mask"]] for b in
                           factory.make_pipeline(_config(folder, labels="all"))
                           .eval_batches(8, split="train")])
  np.testing.assert_array_equal(pseudo, np.asarray(predict(images)).argmax(-1))
  # The student's stream carries ground truth on the labeled subset, pseudo-labels elsewhere.
  config = _config(folder)
  config.pseudo_labels = str(tmp_path / "student" / "pseudo_labels.npz")
  data = factory.make_pipeline(config)
  truth = data._source.scan("train")[0]  # pylint: disable=protected-access
  subset = factory.make_pipeline(_config(folder)).labeled_indices
  expected = pseudo.copy()
  expected[subset] = truth[subset]
  np.testing.assert_array_equal(data._train_labels, expected)  # pylint: disable=protected-access
  # 33 batches of 8 = exactly 8 epochs of the 33 non-validation images.
  trained = np.setdiff1d(np.arange(3 * NUM_TRAIN), data.validation_indices)
  streamed = np.concatenate([data.train_batch(s)["labeled"]["label"] for s in range(33)])
  np.testing.assert_array_equal(np.bincount(streamed, minlength=3),
                                8 * np.bincount(expected[trained], minlength=3))


def _balanced_student(folder, tmp_path):
  """(a student config with soft pseudo-labels balanced to 5 per class, the teacher-free
  pipeline): 27 candidates, 2 of class 2, 4 of class 1, 21 of class 0; each class's soft
  target row is 0.5 one-hot + 0.5 / 3."""
  config = _config(folder)
  data = factory.make_pipeline(config)
  n = 3 * NUM_TRAIN
  candidates = np.setdiff1d(np.arange(n), np.union1d(data.labeled_indices,
                                                     data.validation_indices))
  labels = np.zeros(n, np.int32)
  labels[candidates[:2]], labels[candidates[2:6]] = 2, 1
  confidence = np.random.default_rng(0).uniform(0.5, 1, n).astype(np.float32)
  probs = np.eye(3, dtype=np.float32)[labels] * 0.5 + 0.5 / 3
  np.savez(tmp_path / "pl.npz", labels=labels, confidence=confidence, probs=probs)
  config.pseudo_labels, config.pseudo_label_type = str(tmp_path / "pl.npz"), "soft"
  config.pseudo_label_per_class = 5
  return config, data


def test_balanced_soft_pseudo_labels_on_the_tfdata_path(folder, tmp_path):
  """Class balancing repeats images in the tf.data stream; soft targets travel with them."""
  config, data = _balanced_student(folder, tmp_path)
  student = factory.make_pipeline(config)
  assert student.num_labeled == 6 + 3 * 5  # ground truth once, 5 pseudo-labels per class
  # 21 batches of 8 = exactly 8 epochs of the 21 (repeated) examples.
  batches = [student.train_batch(s)["labeled"] for s in range(21)]
  expected = student._train_targets[student.labeled_indices]  # pylint: disable=protected-access
  streamed = np.concatenate([b["soft_label"] for b in batches])
  np.testing.assert_allclose(streamed.sum(0), 8 * expected.sum(0), rtol=1e-5)
  label_counts = np.bincount(np.concatenate([b["label"] for b in batches]), minlength=3)
  truth = data._source.scan("train")[0][data.labeled_indices]  # pylint: disable=protected-access
  np.testing.assert_array_equal(label_counts, 8 * (np.bincount(truth, minlength=3) + 5))


def test_pseudo_stream_on_the_tfdata_path(folder, tmp_path):
  """A stream of source pseudo: the labeled stream keeps its 6 ground-truth images, the pseudo
  stream the 15 class-balanced pseudo-labelled ones, soft targets travelling with them."""
  config, data = _balanced_student(folder, tmp_path)
  config.input.pseudo = dict(source="pseudo", batch_size=5, view=config.input.labeled.view)
  config.input.labeled.batch_size = 6
  student = factory.make_pipeline(config)
  np.testing.assert_array_equal(student.labeled_indices, data.labeled_indices)
  # 4 batches of 6 = 4 epochs of the 6 labeled images; 6 batches of 5 = 2 of the 15 pseudo.
  batches = [student.train_batch(s) for s in range(6)]
  truth = data._source.scan("train")[0][data.labeled_indices]  # pylint: disable=protected-access
  streamed = np.concatenate([b["labeled"]["label"] for b in batches[:4]])
  np.testing.assert_array_equal(np.bincount(streamed, minlength=3),
                                4 * np.bincount(truth, minlength=3))
  pseudo = np.concatenate([b["pseudo"]["label"] for b in batches])
  np.testing.assert_array_equal(np.bincount(pseudo, minlength=3), [10, 10, 10])
  soft = np.concatenate([b["pseudo"]["soft_label"] for b in batches])
  np.testing.assert_allclose(soft, (np.eye(3) * 0.5 + 0.5 / 3)[pseudo], rtol=1e-6)
