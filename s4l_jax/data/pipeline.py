"""Training and evaluation batches from in-memory uint8 arrays (digits, cifar10, folder:PATH).

Batches are host-local numpy dicts of raw uint8 images; the views (crops, flips, rotations,
exemplar crops) are computed on the device inside the jitted step by `views.make_view_fn`,
so this path never imports TensorFlow. Which examples form the batch of step `s` is a pure
function of (seed, s): resuming at any step replays exactly the same data.
"""
import numpy as np
from s4l_jax.data import sources, streams, subsets, views


def images_per_step(config) -> int:
  """Images the model sees per step: each stream's batch size x its view's copies."""
  return sum(config.input[name].batch_size * views.copies(config.input[name].view)
             for name in ("labeled", "unlabeled"))


class InMemoryPipeline:
  """Labeled and unlabeled train streams and a masked eval stream over one dataset."""

  views_on_device = True

  def __init__(self, config, process_index: int = 0, process_count: int = 1):
    kw = dict(image_size=config.input.image_size, data_dir=config.data_dir or None,
              strict=config.strict_data)
    self.train = sources.load_split(config.dataset, "train", **kw)
    self.test = sources.load_split(config.dataset, "test", **kw)
    self.class_names = list(self.train.class_names)
    self.num_classes = len(self.class_names)
    self.process_index, self.process_count = process_index, process_count

    self.labeled_indices = subsets.select_labeled(
        self.train.labels, config.labels, config.seed, self.num_classes, self.train.filenames)
    self.train_labels = self.train.labels
    if config.pseudo_labels:  # student: every image, ground truth where labeled
      self.train_labels, self.labeled_indices = pseudo_label_subset(
          config, self.train.labels, self.labeled_indices, self.num_classes)
    labeled_batch = config.input.labeled.batch_size
    self._labeled = streams.TrainIndexStream(
        len(self.labeled_indices), labeled_batch, config.seed, process_index, process_count)
    unlabeled_batch = config.input.unlabeled.batch_size
    # S4L: the unlabeled stream is the whole train split, labeled images included.
    self._unlabeled = streams.TrainIndexStream(
        len(self.train.labels), unlabeled_batch, config.seed + 1, process_index,
        process_count) if unlabeled_batch else None
    self.images_per_step = images_per_step(config)

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_indices)

  @property
  def num_unlabeled(self) -> int:
    """Images in the unlabeled stream: the whole train split (S4L)."""
    return len(self.train.labels)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.images.shape[1:]

  def train_batch(self, step: int) -> dict:
    """Host-local raw batch of `step`: {"labeled": {image, label}, ["unlabeled": {...}]}."""
    idx = self.labeled_indices[self._labeled.indices(step)]
    batch = {"labeled": {"image": self.train.images[idx], "label": self.train_labels[idx]}}
    if self._unlabeled:
      idx = self._unlabeled.indices(step)
      batch["unlabeled"] = {"image": self.train.images[idx], "label": self.train.labels[idx]}
    return batch

  def eval_batches(self, global_batch: int, split: str = "test"):
    """Yields host-local {image, label, mask}; every example counted once over all hosts."""
    data = self.test if split == "test" else self.train
    return masked_batches(data, global_batch, self.process_index, self.process_count)


def masked_batches(data, global_batch: int, process_index: int = 0, process_count: int = 1):
  """Yields host-local {image, label, mask} of an ArrayDataset, each example once overall."""
  for idx, mask in streams.eval_batches(len(data.labels), global_batch, process_index,
                                        process_count):
    yield {"image": data.images[idx], "label": data.labels[idx], "mask": mask}


def pseudo_label_subset(config, true_labels, labeled_indices, num_classes: int):
  """(training labels (N,), indices to train on): pseudo-labels with ground truth where
  labeled; images whose teacher confidence is below `pseudo_label_threshold` are dropped."""
  labels, confidence = load_pseudo_labels(config.pseudo_labels, len(true_labels), num_classes)
  labels[labeled_indices] = true_labels[labeled_indices]
  keep = confidence >= config.pseudo_label_threshold
  keep[labeled_indices] = True
  return labels, np.flatnonzero(keep)


def load_pseudo_labels(path: str, num_examples: int,
                       num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """(labels int32 (N,), teacher confidence float32 (N,)) from `pseudo_label.generate`;
  ValueError unless there is one label in [0, num_classes) per train image."""
  with np.load(path) as f:
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
