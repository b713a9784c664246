"""In-memory pipeline: the validation set is held out of both train streams, is evaluated
once over all hosts, and `input.validation=0` gives the batches of the whole train split."""
import numpy as np
import pytest

from s4l_jax.data import factory
from s4l_jax.data import pipeline as pipeline_lib
from s4l_jax.data import streams, subsets
from testing_utils import load_config, tiny


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
