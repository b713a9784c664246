"""In-memory pipeline: the validation set is held out of both train streams, is evaluated
once over all hosts, and `input.validation=0` gives the batches of the whole train split."""
import os

from unittest import mock

import numpy as np
import pytest

from s4l_jax.data import factory
from s4l_jax.data import pipeline as pipeline_lib
from s4l_jax.data import streams, subsets, views
from testing_utils import load_config, tiny, write_image_folder


def _config(validation, labels="10pct"):
  config = tiny(load_config("vat", f"dataset=digits,labels={labels}"), batch=16)
  config.input.validation = validation
  return config


def test_no_validation_gives_the_batches_of_the_whole_train_split():
  """validation=0: the labeled subset and both streams as before validation sets existed."""
  config = _config("0")
  data = factory.make_pipeline(config)
  train = data.train
  labeled = subsets.select_labeled(train.labels, "10pct", config.seed, 10)
  np.testing.assert_array_equal(data.labeled_indices, labeled)
  labeled_stream = streams.TrainIndexStream(len(labeled), 16, config.seed)
  unlabeled_stream = streams.TrainIndexStream(len(train.labels), 16, config.seed + 1)
  for step in (0, 9, 40):
    batch = data.train_batch(step)
    idx = labeled[labeled_stream.indices(step)]
    np.testing.assert_array_equal(batch["labeled"]["image"], train.images[idx])
    np.testing.assert_array_equal(batch["labeled"]["label"], train.labels[idx])
    idx = unlabeled_stream.indices(step)
    np.testing.assert_array_equal(batch["unlabeled"]["image"], train.images[idx])
  with pytest.raises(ValueError, match="input.validation=0 holds none out"):
    next(data.eval_batches(40, "validation"))


def test_validation_images_are_never_trained_on():
  data = factory.make_pipeline(_config("10pct"))
  held_out = set(data.validation_indices)
  counts = np.bincount(data.train.labels)
  np.testing.assert_array_equal(np.bincount(data.train.labels[data.validation_indices]),
                                np.floor(0.1 * counts + 0.5))  # 10% of each class, rounded
  seen_labeled, seen_unlabeled = set(), set()
  images = {data.train.images[i].tobytes(): i for i in range(len(data.train.labels))}
  assert len(images) == len(data.train.labels)  # every digits image is distinct
  for step in range(3 * 1437 // 16):  # three epochs of the unlabeled stream
    batch = data.train_batch(step)
    seen_labeled |= {images[x.tobytes()] for x in batch["labeled"]["image"]}
    seen_unlabeled |= {images[x.tobytes()] for x in batch["unlabeled"]["image"]}
  assert not held_out & seen_labeled and not held_out & seen_unlabeled
  assert seen_unlabeled == set(range(1437)) - held_out  # every other image is


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_validation_eval_counts_each_image_once_over_hosts(process_count):
  pipes = [pipeline_lib.InMemoryPipeline(_config("10pct"), p, process_count)
           for p in range(process_count)]
  train, expected = pipes[0].train, pipes[0].validation_indices
  per_host = [list(p.eval_batches(40, "validation")) for p in pipes]
  assert len({len(b) for b in per_host}) == 1  # every host runs the same number of steps
  images = np.concatenate([b["image"][b["mask"]] for host in per_host for b in host])
  labels = np.concatenate([b["label"][b["mask"]] for host in per_host for b in host])
  order = np.lexsort(images.reshape(len(images), -1).T)
  want = np.lexsort(train.images[expected].reshape(len(expected), -1).T)
  np.testing.assert_array_equal(images[order], train.images[expected][want])
  np.testing.assert_array_equal(labels[order], train.labels[expected][want])
  with pytest.raises(ValueError, match="validation|test, got 'train'"):
    pipes[0].eval_batches(40, "train")


def test_balance_classes_keeps_the_top_k_and_duplicates_up_to_k():
  """Hand-built: K = 3; class 0 has 5 images (its 3 most confident kept), class 1 two (both,
  then the more confident again), class 2 one (three times), class 3 none (nothing)."""
  labels = np.array([0, 1, 0, 2, 0, 1, 0, 0])
  confidence = np.array([0.9, 0.4, 0.3, 0.5, 0.8, 0.6, 0.95, 0.1])
  positions = pipeline_lib.balance_classes(labels, confidence, 3)
  np.testing.assert_array_equal(positions, [0, 1, 3, 3, 3, 4, 5, 5, 6])
  np.testing.assert_array_equal(np.bincount(labels[positions], minlength=4), [3, 3, 3, 0])
  assert pipeline_lib.balance_classes(labels[:0], confidence[:0], 3).size == 0


def _pseudo_label_file(path, n, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, num_classes)) * 3
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.savez(path, labels=probs.argmax(-1).astype(np.int32),
           confidence=probs.max(-1).astype(np.float32), probs=probs.astype(np.float16))
  return probs


def _soft_student(tmp_path):
  """(a digits student config with random soft pseudo-labels kept at confidence >= 0.5, its
  teacher-free pipeline, the teacher's probabilities (N, 10))."""
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), batch=16)
  data = pipeline_lib.InMemoryPipeline(config)
  n = len(data.train.labels)
  probs = _pseudo_label_file(tmp_path / "pl.npz", n, 10)
  config.pseudo_labels = str(tmp_path / "pl.npz")
  config.pseudo_label_type, config.pseudo_label_threshold = "soft", 0.5
  return config, data, probs


def test_student_stream_balances_pseudo_labels_and_carries_soft_targets(tmp_path):
  config, data, probs = _soft_student(tmp_path)
  n = len(data.train.labels)
  config.pseudo_label_per_class = 40
  student = pipeline_lib.InMemoryPipeline(config)
  labeled, validation = data.labeled_indices, data.validation_indices
  # Ground truth once each; pseudo-labels: the confident non-validation, non-labeled images,
  # 40 per class after balancing (counted independently of balance_classes).
  counts = np.bincount(student.labeled_indices, minlength=n)
  np.testing.assert_array_equal(counts[labeled], 1)
  assert not counts[validation].any()
  candidate = probs.max(-1) >= 0.5
  candidate[labeled] = candidate[validation] = False
  pseudo = np.setdiff1d(np.arange(n), labeled)
  assert not counts[pseudo][~candidate[pseudo]].any()
  argmax = probs.argmax(-1)
  for c in range(10):
    members = np.flatnonzero(candidate & (argmax == c))
    assert counts[members].sum() == (40 if members.size else 0)
    if members.size < 40:  # duplicated: every member at least 40 // size times
      assert counts[members].min() >= 40 // members.size
    else:
      assert np.count_nonzero(counts[members]) == 40
  # Soft targets: the teacher's probabilities (rows sum to 1), one-hot ground truth.
  targets = student.train_targets
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  unlabeled = np.setdiff1d(np.arange(n), labeled)
  np.testing.assert_allclose(targets[unlabeled], probs[unlabeled], atol=1e-3)
  np.testing.assert_array_equal(targets[labeled], np.eye(10)[data.train.labels[labeled]])
  batch = student.train_batch(3)["labeled"]
  idx = student.labeled_indices[streams.TrainIndexStream(
      len(student.labeled_indices), 16, config.seed).indices(3)]
  np.testing.assert_array_equal(batch["soft_label"], targets[idx])
  np.testing.assert_array_equal(batch["label"], student.train_labels[idx])


def test_pseudo_stream_separates_the_pseudo_labelled_images(tmp_path):
  """A stream of source pseudo: the labeled stream keeps ground truth only, the pseudo stream
  draws the confident pseudo-labelled images with the next seed (declared order: labeled,
  pseudo, unlabeled), and the two sources together are the shared stream's images."""
  config, data, probs = _soft_student(tmp_path)
  shared = pipeline_lib.InMemoryPipeline(config)
  config.input.pseudo = dict(source="pseudo", batch_size=32, view="train")
  student = pipeline_lib.InMemoryPipeline(config)
  labeled = data.labeled_indices
  np.testing.assert_array_equal(student.labeled_indices, labeled)
  candidate = probs.max(-1) >= 0.5
  candidate[labeled] = candidate[data.validation_indices] = False
  pseudo = np.flatnonzero(candidate)
  np.testing.assert_array_equal(student.source_indices["pseudo"], pseudo)
  np.testing.assert_array_equal(np.sort(np.concatenate([labeled, pseudo])),
                                shared.labeled_indices)
  assert student.images_per_step == 16 + 32
  for step in (0, 7):
    batch = student.train_batch(step)
    assert sorted(batch) == ["labeled", "pseudo"]
    idx = labeled[streams.TrainIndexStream(len(labeled), 16, config.seed).indices(step)]
    np.testing.assert_array_equal(batch["labeled"]["label"], data.train.labels[idx])
    idx = pseudo[streams.TrainIndexStream(len(pseudo), 32, config.seed + 1).indices(step)]
    np.testing.assert_array_equal(batch["pseudo"]["image"], data.train.images[idx])
    np.testing.assert_array_equal(batch["pseudo"]["label"], probs[idx].argmax(-1))
    np.testing.assert_allclose(batch["pseudo"]["soft_label"], probs[idx], atol=1e-3)


def test_an_empty_pseudo_source_fails_in_one_line(tmp_path):
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), batch=16)
  n = len(pipeline_lib.InMemoryPipeline(config).train.labels)
  _pseudo_label_file(tmp_path / "pl.npz", n, 10)
  config.pseudo_labels, config.pseudo_label_threshold = str(tmp_path / "pl.npz"), 1.0
  config.input.pseudo = dict(source="pseudo", batch_size=16, view="train")
  with pytest.raises(ValueError, match=r"^input.pseudo draws from the pseudo source, which "
                     r"holds no image: no pseudo-label reaches pseudo_label_threshold=1.0"):
    pipeline_lib.InMemoryPipeline(config)


def test_the_shared_stream_warns_when_no_pseudo_label_reaches_the_threshold(tmp_path):
  """Without a pseudo stream the pseudo-labels join the labeled one; none kept is legal (the
  student sees ground truth alone) but said: a warning with the count of candidates."""
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), batch=16)
  data = pipeline_lib.InMemoryPipeline(config)
  n = len(data.train.labels)
  _pseudo_label_file(tmp_path / "pl.npz", n, 10)
  config.pseudo_labels, config.pseudo_label_threshold = str(tmp_path / "pl.npz"), 1.0
  candidates = n - len(data.labeled_indices) - len(data.validation_indices)
  with mock.patch.object(pipeline_lib.logging, "warning") as warning:
    student = pipeline_lib.InMemoryPipeline(config)
  np.testing.assert_array_equal(student.labeled_indices, data.labeled_indices)
  warning.assert_called_once()
  assert warning.call_args.args[1:3] == (0, candidates)
  assert "labeled images alone" in warning.call_args.args[0] % warning.call_args.args[1:]


def test_soft_targets_need_a_file_with_probabilities(tmp_path):
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), batch=16)
  n = len(pipeline_lib.InMemoryPipeline(config).train.labels)
  np.savez(tmp_path / "pl.npz", labels=np.zeros(n, np.int32), confidence=np.ones(n, np.float32))
  config.pseudo_labels, config.pseudo_label_type = str(tmp_path / "pl.npz"), "soft"
  with pytest.raises(ValueError, match="hold no probabilities: they were made with "
                     "pseudo_label_type='hard'"):
    pipeline_lib.InMemoryPipeline(config)


def test_empty_class_folder_is_named_by_its_folder(tmp_path):
  root = write_image_folder(tmp_path / "imgs", classes=("ant", "bee", "cat"))
  for name in os.listdir(os.path.join(root, "train", "bee")):
    os.remove(os.path.join(root, "train", "bee", name))
  config = tiny(load_config("supervised", f"dataset=folder:{root},labels=2perclass"))
  config.input.validation = "0"
  with pytest.raises(ValueError, match=r"asks for 2 examples of class 'bee' \(label 1\), "
                     "which has only 0"):
    pipeline_lib.InMemoryPipeline(config)


def test_eval_batches_are_the_eval_crop_of_the_stored_images():
  """digits' default eval crop keeps the stored images bit for bit (evaluation unchanged);
  another `input.eval_crop` gives its device crop of them, on every eval split."""
  config = _config("10pct")
  data = pipeline_lib.InMemoryPipeline(config)
  batch = next(data.eval_batches(40, "test"))
  np.testing.assert_array_equal(batch["image"], data.test.images[:40])
  config.input.eval_crop = "central_crop_875"
  cropped = pipeline_lib.InMemoryPipeline(config)
  crop = views.make_eval_crop_fn("central_crop_875", image_size=8)
  for split, source, indices in (("test", data.test, np.arange(40)),
                                 ("validation", data.train, data.validation_indices[:40])):
    got = next(cropped.eval_batches(40, split))["image"]
    np.testing.assert_array_equal(got, crop(source.images[indices]))
    assert (got != source.images[indices]).any()
