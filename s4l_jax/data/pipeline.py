"""Training and evaluation batches from in-memory uint8 arrays (digits, cifar10, folder:PATH).

Batches are host-local numpy dicts of raw uint8 images; the views (crops, flips, rotations,
exemplar crops) are computed on the device inside the jitted step by `views.make_view_fn`,
so this path never imports TensorFlow. Which examples form the batch of step `s` is a pure
function of (seed, s): resuming at any step replays exactly the same data.
"""
import dataclasses
import functools
from typing import NamedTuple

from absl import logging
import numpy as np

from s4l_jax import storage
from s4l_jax.data import sources, streams, subsets, views


def images_per_step(config) -> int:
  """Images the model sees per step: each stream's batch size x its view's copies."""
  return sum(spec.batch_size * views.copies(spec.view)
             for spec in streams.declared(config.input).values())


def source_indices(split: subsets.TrainSplit, pseudo: "PseudoLabelSet | None",
                   config) -> dict[str, np.ndarray]:
  """{source: the train images (N,) int64 it draws from} (`streams.SOURCES`); `pseudo` the
  run's pseudo-labels, if any: they join the labeled source unless a stream reads them.
  ValueError (one line) if a stream's source holds no image."""
  out = {"labeled": split.labeled, "unlabeled": split.unlabeled}
  if pseudo is not None:
    separate = streams.reads_pseudo(config.input)
    out["labeled"] = pseudo.labeled if separate else pseudo.indices
    out["pseudo"] = pseudo.pseudo
  for name, (_, spec) in streams.active(config.input).items():
    if not out[spec.source].size:
      hint = (f": no pseudo-label reaches pseudo_label_threshold={config.pseudo_label_threshold}"
              " (a teacher at chance?)" if spec.source == "pseudo" else "")
      raise ValueError(f"input.{name} draws from the {spec.source} source, which holds no "
                       f"image{hint}")
  return out


class InMemoryPipeline:
  """The train streams a config declares (`streams.declared`) and masked eval streams over
  one dataset.

  The validation set (`subsets.split_train`) is held out of every train stream; without one
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
    self.validation_indices = split.validation
    pseudo = None
    self.train_labels, self.train_targets = self.train.labels, None
    if config.pseudo_labels:  # student: every non-validation image, ground truth where labeled
      pseudo = pseudo_label_subset(config, self.train.labels, split.labeled, self.num_classes,
                                   self.validation_indices)
      self.train_labels, self.train_targets = pseudo.labels, pseudo.targets
    self.source_indices = source_indices(split, pseudo, config)
    self.labeled_indices = self.source_indices["labeled"]
    self._streams = {
        name: (spec.source, streams.TrainIndexStream(
            len(self.source_indices[spec.source]), spec.batch_size, config.seed + k,
            process_index, process_count))
        for name, (k, spec) in streams.active(config.input).items()}
    self.images_per_step = images_per_step(config)

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_indices)

  @property
  def num_unlabeled(self) -> int:
    """Images in the unlabeled source: the whole train split but the validation set (S4L)."""
    return len(self.source_indices["unlabeled"])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.images.shape[1:]

  def train_batch(self, step: int) -> dict:
    """Host-local raw batch of `step`: {stream name: {image, label, [soft_label (B, K)],
    [index]}} over the active streams; labeled and pseudo sources carry the labels the run
    trains on (soft_label with soft pseudo-labels), the unlabeled source the true labels (for
    logging) and index: int32 (B,) each image's index in the train split (PIRL's memory bank)."""
    batch = {}
    for name, (source, stream) in self._streams.items():
      idx = self.source_indices[source][stream.indices(step)]
      if source == "unlabeled":
        batch[name] = {"image": self.train.images[idx], "label": self.train.labels[idx],
                       "index": idx.astype(np.int32)}
        continue
      batch[name] = {"image": self.train.images[idx], "label": self.train_labels[idx]}
      if self.train_targets is not None:
        batch[name]["soft_label"] = self.train_targets[idx]
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
  float32 (N, K) (one-hot where labeled), both indexed by train image; `labeled` the sorted
  labeled train images (validation excluded), `pseudo` the sorted pseudo-labelled ones,
  repeated where class balancing duplicates them."""
  labels: np.ndarray
  labeled: np.ndarray
  pseudo: np.ndarray
  targets: np.ndarray | None

  @property
  def indices(self) -> np.ndarray:
    """Both sets, sorted: the one stream of ground truth and pseudo-labels."""
    return np.sort(np.concatenate([self.labeled, self.pseudo]))


def pseudo_label_subset(config, true_labels, labeled_indices, num_classes: int,
                        validation_indices: np.ndarray) -> PseudoLabelSet:
  """Pseudo-labels with ground truth where labeled. Validation images and pseudo-labels whose
  teacher confidence is below `pseudo_label_threshold` are dropped; the rest are class-balanced
  to `pseudo_label_per_class` per class (`balance_classes`) when it is > 0."""
  labels, confidence = load_pseudo_labels(config.pseudo_labels, len(true_labels), num_classes)
  labels[labeled_indices] = true_labels[labeled_indices]
  candidate = np.ones(len(true_labels), bool)  # neither labeled nor held out
  candidate[labeled_indices] = False
  candidate[validation_indices] = False
  pseudo = np.flatnonzero(candidate & (confidence >= config.pseudo_label_threshold))
  log = logging.warning if not len(pseudo) else logging.info
  log("%d of %d unlabeled train images reach pseudo_label_threshold=%s%s", len(pseudo),
      np.count_nonzero(candidate), config.pseudo_label_threshold,
      "" if len(pseudo) else ": the student learns from the labeled images alone")
  if config.pseudo_label_per_class:
    pseudo = pseudo[balance_classes(labels[pseudo], confidence[pseudo],
                                    config.pseudo_label_per_class)]
  labeled = np.zeros(len(true_labels), bool)
  labeled[labeled_indices] = True
  labeled[validation_indices] = False
  targets = None
  if config.pseudo_label_type == "soft":
    targets = load_soft_targets(config.pseudo_labels, len(true_labels), num_classes)
    targets[labeled_indices] = np.eye(num_classes, dtype=np.float32)[true_labels[labeled_indices]]
  return PseudoLabelSet(labels, np.flatnonzero(labeled), pseudo, targets)


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
