"""Training and evaluation batches from in-memory uint8 arrays (digits, cifar10, folder:PATH).

Batches are host-local numpy dicts of raw uint8 images; the views (crops, flips, rotations,
exemplar crops) are computed on the device inside the jitted step by `views.make_view_fn`,
so this path never imports TensorFlow. Which examples form the batch of step `s` is a pure
function of (seed, s): resuming at any step replays exactly the same data.
"""
import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from s4l_jax import storage
from s4l_jax.data import sources, streams, subsets, views


def images_per_step(config) -> int:
  """Images the model sees per step: each stream's batch size x its view's copies."""
  return sum(config.input[name].batch_size * views.copies(config.input[name].view)
             for name in ("labeled", "unlabeled"))


class InMemoryPipeline:
  """Labeled and unlabeled train streams and masked eval streams over one dataset.

  The validation set (`subsets.split_train`) is held out of both train streams; without one
  (`input.validation=0`) the streams are those of the whole train split.
  """

  views_on_device = True

  def __init__(self, config, process_index: int = 0, process_count: int = 1):
    kw = dict(image_size=config.input.image_size, data_dir=config.data_dir or None,
              strict=config.strict_data)
    self.train = sources.load_split(config.dataset, "train", **kw)
    self.test = sources.load_split(config.dataset, "test", **kw)
    self.class_names = list(self.train.class_names)
    self.num_classes = len(self.class_names)
    self.process_index, self.process_count = process_index, process_count
    self._eval_crop = views.make_eval_crop_fn(config.input.eval_crop,
                                              image_size=config.input.image_size)

    split = subsets.split_train(
        self.train.labels, labels_spec=config.labels, validation_spec=config.input.validation,
        seed=config.seed, num_classes=self.num_classes, filenames=self.train.filenames,
        dataset=config.dataset, class_names=self.class_names)
    self.labeled_indices, self.validation_indices = split.labeled, split.validation
    self._unlabeled_indices = split.unlabeled
    self.train_labels, self.train_targets = self.train.labels, None
    if config.pseudo_labels:  # student: every non-validation image, ground truth where labeled
      self.train_labels, self.labeled_indices, self.train_targets = pseudo_label_subset(
          config, self.train.labels, self.labeled_indices, self.num_classes,
          self.validation_indices)
    labeled_batch = config.input.labeled.batch_size
    self._labeled = streams.TrainIndexStream(
        len(self.labeled_indices), labeled_batch, config.seed, process_index, process_count)
    unlabeled_batch = config.input.unlabeled.batch_size
    # S4L: the unlabeled stream is the whole train split (but validation), labeled included.
    self._unlabeled = streams.TrainIndexStream(
        len(self._unlabeled_indices), unlabeled_batch, config.seed + 1, process_index,
        process_count) if unlabeled_batch else None
    self.images_per_step = images_per_step(config)

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_indices)

  @property
  def num_unlabeled(self) -> int:
    """Images in the unlabeled stream: the whole train split but the validation set (S4L)."""
    return len(self._unlabeled_indices)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.images.shape[1:]

  def train_batch(self, step: int) -> dict:
    """Host-local raw batch of `step`: {"labeled": {image, label, [soft_label (B, K)]},
    ["unlabeled": {image, label, index}]}; soft_label with soft pseudo-labels; index: int32
    (B,) each image's index in the train split (PIRL's memory bank)."""
    idx = self.labeled_indices[self._labeled.indices(step)]
    batch = {"labeled": {"image": self.train.images[idx], "label": self.train_labels[idx]}}
    if self.train_targets is not None:
      batch["labeled"]["soft_label"] = self.train_targets[idx]
    if self._unlabeled:
      idx = self._unlabeled_indices[self._unlabeled.indices(step)]
      batch["unlabeled"] = {"image": self.train.images[idx], "label": self.train.labels[idx],
                            "index": idx.astype(np.int32)}
    return batch

  @property
  def num_test(self) -> int:
    return len(self.test.labels)

  def eval_batches(self, global_batch: int, split: str = "test"):
    """Yields host-local {image, label, mask} of `split` (validation | test | labeled: the
    labeled training set, once each, with the labels it trains on); every example counted
    once over all hosts. Images: the eval crop (`input.eval_crop`) of the stored ones."""
    batches = functools.partial(masked_batches, global_batch=global_batch,
                                process_index=self.process_index,
                                process_count=self.process_count, eval_crop=self._eval_crop)
    if split == "labeled":
      data = dataclasses.replace(self.train, labels=self.train_labels)
      return batches(data, indices=np.unique(self.labeled_indices))
    if split == "test":
      return batches(self.test)
    if split == "validation":
      if not self.validation_indices.size:
        raise ValueError("eval split 'validation' is empty: input.validation=0 holds none out")
      return batches(self.train, indices=self.validation_indices)
    raise ValueError(f"eval split must be validation|test|labeled, got {split!r}")


def masked_batches(data, global_batch: int, process_index: int = 0, process_count: int = 1,
                   indices: np.ndarray | None = None, eval_crop=None):
  """Yields host-local {image, label, mask} of an ArrayDataset (of its examples `indices`,
  default all), each example once overall; images through `eval_crop` (`views.
  make_eval_crop_fn`: uint8 (B, H, W, C) -> uint8 (B, S, S, C)), None: as stored."""
  num = len(data.labels) if indices is None else len(indices)
  for pos, mask in streams.eval_batches(num, global_batch, process_index, process_count):
    idx = pos if indices is None else indices[pos]
    images = data.images[idx]
    if eval_crop is not None:
      images = np.asarray(eval_crop(images))
    yield {"image": images, "label": data.labels[idx], "mask": mask}


class PseudoLabelSet(NamedTuple):
  """A student's training set: `labels` int32 (N,) and, for soft pseudo-labels, `targets`
  float32 (N, K) (one-hot where labeled), both indexed by train image; `indices` the sorted
  train images to train on, repeated where class balancing duplicates them."""
  labels: np.ndarray
  indices: np.ndarray
  targets: np.ndarray | None


def pseudo_label_subset(config, true_labels, labeled_indices, num_classes: int,
                        validation_indices: np.ndarray) -> PseudoLabelSet:
  """Pseudo-labels with ground truth where labeled. Validation images and pseudo-labels whose
  teacher confidence is below `pseudo_label_threshold` are dropped; the rest are class-balanced
  to `pseudo_label_per_class` per class (`balance_classes`) when it is > 0."""
  labels, confidence = load_pseudo_labels(config.pseudo_labels, len(true_labels), num_classes)
  labels[labeled_indices] = true_labels[labeled_indices]
  pseudo = confidence >= config.pseudo_label_threshold
  pseudo[labeled_indices] = False
  pseudo[validation_indices] = False
  pseudo = np.flatnonzero(pseudo)
  if config.pseudo_label_per_class:
    pseudo = pseudo[balance_classes(labels[pseudo], confidence[pseudo],
                                    config.pseudo_label_per_class)]
  labeled = np.zeros(len(true_labels), bool)
  labeled[labeled_indices] = True
  labeled[validation_indices] = False
  indices = np.sort(np.concatenate([np.flatnonzero(labeled), pseudo]))
  targets = None
  if config.pseudo_label_type == "soft":
    targets = load_soft_targets(config.pseudo_labels, len(true_labels), num_classes)
    targets[labeled_indices] = np.eye(num_classes, dtype=np.float32)[true_labels[labeled_indices]]
  return PseudoLabelSet(labels, indices, targets)


def balance_classes(labels: np.ndarray, confidence: np.ndarray, per_class: int) -> np.ndarray:
  """Noisy Student's class balancing: sorted positions into `labels` (M,), `per_class` = K of
  each class present: its K most confident if it has more, else all of them repeated
  K // n times plus the K % n most confident once more."""
  out = [np.zeros(0, np.int64)]
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    members = members[np.argsort(-confidence[members], kind="stable")]
    repeats, rest = divmod(per_class, len(members))
    out.append(np.concatenate([np.tile(members, repeats), members[:rest]]))
  return np.sort(np.concatenate(out))


def load_pseudo_labels(path: str, num_examples: int,
                       num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """(labels int32 (N,), teacher confidence float32 (N,)) from `pseudo_label.generate`;
  ValueError unless there is one label in [0, num_classes) per train image."""
  with storage.open_file(path, "rb") as file, np.load(file) as f:
    labels = np.asarray(f["labels"], np.int32)
    confidence = np.asarray(f["confidence"], np.float32)
  if labels.shape != (num_examples,):
    raise ValueError(f"Pseudo-labels {path!r} hold {labels.shape[0]} labels, the train split "
                     f"has {num_examples} images")
  bad = (labels < 0) | (labels >= num_classes)
  if bad.any():
    raise ValueError(f"Pseudo-labels {path!r} hold {int(bad.sum())} labels outside "
                     f"[0, {num_classes}) (e.g. {int(labels[bad][0])}), the dataset's "
                     "classes; make them with a teacher trained on this dataset")
  return labels, confidence


def load_soft_targets(path: str, num_examples: int, num_classes: int) -> np.ndarray:
  """The teacher's probabilities float32 (N, num_classes), rows renormalised to sum to 1
  (stored as float16); ValueError if `path` holds hard pseudo-labels only."""
  with storage.open_file(path, "rb") as file, np.load(file) as f:
    if "probs" not in f:
      raise ValueError(f"Pseudo-labels {path!r} hold no probabilities: they were made with "
                       "pseudo_label_type='hard'; delete the file to relabel")
    probs = np.asarray(f["probs"], np.float32)
  if probs.shape != (num_examples, num_classes):
    raise ValueError(f"Pseudo-label probabilities {path!r} have shape {probs.shape}, expected "
                     f"({num_examples}, {num_classes})")
  return probs / probs.sum(-1, keepdims=True)
