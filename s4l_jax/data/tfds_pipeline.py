"""tf.data pipeline for TFDS imagenet2012 and image folders: host crops, device finish.

tf.data decodes, crops and resizes on the host and emits uint8 crops at image_size
(`tf_views.make_tf_crop_fn`); the jitted train step applies the rest of the view
(`views.make_view_fn(..., host_cropped=True)`: flips, rotations, HSV noise, scaling), so the
host cost of rotate4 / exemplar8 stays close to decoding alone (benchmarks/README.md).

Examples are addressed by their index in the unshuffled split. The validation set and the
labeled subset are `subsets.split_train` on the train labels (and, for `labels=file:PATH`,
file names), read once at construction: folders from the file list (no image reads); TFDS
builders with one pass over the records, images left undecoded (for ImageNet this reads the
train split once, minutes). Every stream the config declares (`streams.declared`) draws from
its source: host p streams the source's examples in the index range [N p / P, N (p + 1) / P),
shuffled per epoch with seed (seed + k, epoch) for the k-th stream; augmentation seeds are a
function of the position in the host's stream. `train_batch(step)` therefore returns the same
batch after a restart: the stream is rebuilt at `step`, whole epochs are skipped for free and
the rest of the current epoch is skipped before decoding (records are read and shuffled, not
decoded). The validation images' encoded bytes are read once, at the first validation eval (a
pass over the train records for TFDS), and kept in memory.
"""
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from s4l_jax.data import datasets, pipeline, streams, subsets, tf_views, tfds_sources

SHUFFLE_BUFFER = 10_000


class _FolderSource:
  """`<root>/<split>/<class>/<image>.jpg` (tfds ImageFolder); labels from the file list."""

  def __init__(self, root: str):
    self._root = root
    self.builder = tfds.folder_dataset.ImageFolder(root)
    examples = self.builder._split_examples  # pylint: disable=protected-access
    str2int = self.builder.info.features["label"].str2int
    self._paths = {s: np.array([e.image_path for e in ex]) for s, ex in examples.items()}
    self._labels = {s: np.array([str2int(e.label) for e in ex], np.int32)
                    for s, ex in examples.items()}

  def scan(self, split: str, filenames: bool = False) -> tuple[np.ndarray, list[str] | None]:
    """(labels (N,), [image paths relative to the root (N,)]) in index order."""
    paths = [os.path.relpath(p, self._root) for p in self._paths[split]] if filenames else None
    return self._labels[split], paths

  def dataset(self, split: str, indices: np.ndarray) -> tf.data.Dataset:
    """{"image": JPEG bytes, "label": int32} of `indices` (sorted), in that order."""
    ds = tf.data.Dataset.from_tensor_slices(
        (self._paths[split][indices], self._labels[split][indices]))
    return ds.map(lambda path, label: {"image": tf.io.read_file(path), "label": label},
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class _TfdsSource:
  """A prepared TFDS builder; reads contiguous index ranges with the sub-split API."""

  def __init__(self, name: str, data_dir: str | None):
    self.builder = tfds_sources.check_prepared(name, data_dir)

  def _read(self, split):
    return self.builder.as_dataset(split=split, shuffle_files=False,
                                   decoders={"image": tfds.decode.SkipDecoding()})

  def scan(self, split: str, filenames: bool = False) -> tuple[np.ndarray, list[str] | None]:
    """(labels (N,) int32, [`file_name`s (N,)]) in index order: one pass, images undecoded."""
    keys = ("label", "file_name") if filenames else ("label",)
    ds = self._read(split).map(lambda ex: {k: ex[k] for k in keys}).batch(10_000)
    batches = list(tfds.as_numpy(ds))
    labels = np.concatenate([b["label"] for b in batches]).astype(np.int32)
    names = [n.decode() for b in batches for n in b["file_name"]] if filenames else None
    return labels, names

  def dataset(self, split: str, indices: np.ndarray) -> tf.data.Dataset:
    """{"image": JPEG bytes, "label": int32} of `indices` (sorted), in that order."""
    lo, hi = int(indices[0]), int(indices[-1]) + 1
    keep = np.zeros(hi - lo, bool)
    keep[indices - lo] = True
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(keep),
                              self._read(f"{split}[{lo}:{hi}]")))
    return ds.filter(lambda k, ex: k).map(
        lambda k, ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32)})


class TfdsPipeline:
  """The `factory.make_pipeline` interface over tf.data; views finished on the device."""

  views_on_device = False

  def __init__(self, config, process_index: int = 0, process_count: int = 1):
    family = datasets.get(config.dataset)
    if family.source == "folder":
      self._source = _FolderSource(datasets.folder_root(config.dataset))
    else:
      self._source = _TfdsSource(config.dataset, config.data_dir or None)
    self._eval_split = family.test_split
    self._config = config
    self.process_index, self.process_count = process_index, process_count
    self.class_names = list(self._source.builder.info.features["label"].names)
    self.num_classes = len(self.class_names)
    by_file = subsets.parse_labels_spec(config.labels)[0] == "file"
    labels, filenames = self._source.scan("train", filenames=by_file)
    self._num_train = len(labels)
    split = subsets.split_train(labels, labels_spec=config.labels,
                                validation_spec=config.input.validation, seed=config.seed,
                                num_classes=self.num_classes, filenames=filenames,
                                dataset=config.dataset, class_names=self.class_names)
    self.validation_indices = split.validation
    self._validation_cache = None  # this host's validation examples, encoded
    self._train_labels = None  # None: the dataset's own labels
    self._train_targets = None  # soft pseudo-labels (N, K)
    pseudo = None
    if config.pseudo_labels:  # student: every non-validation image, ground truth where labeled
      pseudo = pipeline.pseudo_label_subset(config, labels, split.labeled, self.num_classes,
                                            self.validation_indices)
      self._train_labels, self._train_targets = pseudo.labels, pseudo.targets
    self.source_indices = pipeline.source_indices(split, pseudo, config)
    self.labeled_indices = self.source_indices["labeled"]
    size = config.input.image_size
    self.image_shape = (size, size, 3)
    self.images_per_step = pipeline.images_per_step(config)
    self._iters, self._next_step = {}, None

  @property
  def num_labeled(self) -> int:
    return len(self.labeled_indices)

  @property
  def num_unlabeled(self) -> int:
    """Images in the unlabeled source: the whole train split but the validation set (S4L)."""
    return len(self.source_indices["unlabeled"])

  def _host_range(self, n: int) -> tuple[int, int]:
    p, count = self.process_index, self.process_count
    return n * p // count, n * (p + 1) // count

  def _local(self, global_batch: int) -> int:
    if global_batch % self.process_count:
      raise ValueError(f"Batch {global_batch} is not divisible by process_count "
                       f"{self.process_count}.")
    return global_batch // self.process_count

  def _stream(self, name: str, offset: int, spec, step: int):
    """Host-local batches of stream `name` (section `spec`, the `offset`-th declared) from
    batch `step` on (infinite)."""
    config = self._config
    seed = config.seed + offset
    indices = self.source_indices[spec.source]
    lo, hi = self._host_range(self._num_train)
    indices = indices[(indices >= lo) & (indices < hi)]
    if not indices.size:
      raise ValueError(f"Host {self.process_index} holds no {name} examples: fewer "
                       f"{spec.source} examples ({self.source_indices[spec.source].size}) "
                       "than hosts?")
    n, batch = indices.size, self._local(spec.batch_size)
    first_epoch, skip = divmod(step * batch, n)
    unique, counts = np.unique(indices, return_counts=True)  # class balancing repeats some
    base = self._source.dataset("train", unique)
    relabel = spec.source != "unlabeled"  # the unlabeled source keeps the true labels
    if relabel and self._train_labels is not None:  # pseudo-labels, by example index
      base = tf.data.Dataset.zip((base, tf.data.Dataset.from_tensor_slices(
          self._train_labels[unique]))).map(lambda ex, label: {**ex, "label": label})
    if relabel and self._train_targets is not None:
      base = tf.data.Dataset.zip((base, tf.data.Dataset.from_tensor_slices(
          self._train_targets[unique]))).map(lambda ex, t: {**ex, "soft_label": t})
    if unique.size < n:
      base = tf.data.Dataset.zip((base, tf.data.Dataset.from_tensor_slices(counts))).flat_map(
          lambda ex, c: tf.data.Dataset.from_tensors(ex).repeat(c))
    buffer = min(n, SHUFFLE_BUFFER)
    ds = tf.data.Dataset.counter(first_epoch).flat_map(
        lambda e: base.shuffle(buffer, seed=seed * 1_000_003 + e))
    ds = ds.enumerate(first_epoch * n).skip(skip)
    host_seed = tf.constant([seed, self.process_index], tf.int64)
    ds = ds.map(lambda i, ex: {
        **ex, "seed": tf.random.experimental.stateless_fold_in(host_seed, i)})
    view_fn = tf_views.make_tf_crop_fn(spec.view, image_size=config.input.image_size,
                                       crop=config.input.crop, decode=True)
    ds = ds.map(view_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds))

  def train_batch(self, step: int) -> dict:
    """Host-local batch of `step`: {stream name: {image uint8, label, [soft_label]}} over the
    active streams (`streams.active`).

    Images are uint8 crops: (b, S, S, C), or (b, K, S, S, C) for exemplar8 / simclr2.
    """
    if step != self._next_step:
      self._iters = {name: self._stream(name, offset, spec, step)
                     for name, (offset, spec) in streams.active(self._config.input).items()}
    self._next_step = step + 1
    return {n: next(it) for n, it in self._iters.items()}

  @property
  def num_test(self) -> int:
    return self._source.builder.info.splits[self._eval_split].num_examples

  def eval_batches(self, global_batch: int, split: str = "test"):
    """Yields host-local {image uint8 (b, S, S, C), label, mask}, b = global_batch // P.

    `split`: test (the dataset's held-out split), validation (the carved train images),
    train (every train image, in index order: for pseudo-labelling) or labeled (the labeled
    training set, once each, with the labels it trains on). Host p evaluates
    positions [N p / P, N (p + 1) / P) of the split's examples; every host yields
    ceil(ceil(N / P) / b) batches (the last ones padded, mask False), so each example is
    counted exactly once over all hosts.
    """
    if split not in ("test", "validation", "train", "labeled"):
      raise ValueError(f"eval split must be validation|test|train|labeled, got {split!r}")
    if split == "validation" and not self.validation_indices.size:
      raise ValueError("eval split 'validation' is empty: input.validation=0 holds none out")
    labeled = np.unique(self.labeled_indices)
    if split == "validation":
      n = self.validation_indices.size
    elif split == "labeled":
      n = labeled.size
    else:
      split = self._eval_split if split == "test" else "train"
      n = self._source.builder.info.splits[split].num_examples
    local = self._local(global_batch)
    lo, hi = self._host_range(n)
    per_host = -(-n // self.process_count)  # the largest host range
    num_batches = -(-per_host // local)
    size = self._config.input.image_size
    view_fn = tf_views.make_tf_eval_fn(self._config.input.eval_crop, image_size=size,
                                       decode=True)
    batches = []
    if hi > lo:
      if split == "validation":
        ds = self._validation_dataset(lo, hi)
      elif split == "labeled":
        ds = self._labeled_dataset(labeled[lo:hi])
      else:
        ds = self._source.dataset(split, np.arange(lo, hi))
      ds = ds.map(view_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      batches = tfds.as_numpy(ds.batch(local).prefetch(tf.data.AUTOTUNE))
    done = 0
    for done, b in enumerate(batches, 1):
      k = len(b["label"])
      yield {"image": np.pad(b["image"], [(0, local - k)] + [(0, 0)] * 3),
             "label": np.pad(b["label"], (0, local - k)),
             "mask": np.arange(local) < k}
    for _ in range(done, num_batches):
      yield {"image": np.zeros((local, size, size, 3), np.uint8),
             "label": np.zeros(local, np.int32), "mask": np.zeros(local, bool)}

  def _labeled_dataset(self, indices: np.ndarray) -> tf.data.Dataset:
    """{"image": encoded bytes, "label"} of train `indices` (sorted), with the labels the run
    trains on (pseudo-labels for a student)."""
    ds = self._source.dataset("train", indices)
    if self._train_labels is None:
      return ds
    return tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(
        self._train_labels[indices]))).map(lambda ex, label: {**ex, "label": label})

  def _validation_dataset(self, lo: int, hi: int) -> tf.data.Dataset:
    """{"image": encoded bytes, "label"} of validation positions [lo, hi), read once: the
    images are spread over the whole train split."""
    if self._validation_cache is None:
      examples = list(tfds.as_numpy(
          self._source.dataset("train", self.validation_indices[lo:hi])))
      self._validation_cache = (np.array([e["image"] for e in examples], object),
                                np.array([e["label"] for e in examples], np.int32))
    images, labels = self._validation_cache
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
