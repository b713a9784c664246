"""TFDS-backed datasets: an offline preparedness check and in-memory CIFAR-10.

tensorflow_datasets is imported inside the functions, so importing this module is cheap.
Nothing here downloads: an unprepared dataset fails at once with the steps to prepare it
(`tfds.load` with download enabled hangs for minutes without network).
"""
import numpy as np

from s4l_jax.data import arrays

_PREPARE = {
    "cifar10": (
        "On a machine with network access run\n"
        "  python -c \"import tensorflow_datasets as tfds; "
        "tfds.builder('cifar10', data_dir='{data_dir}').download_and_prepare()\"\n"
        "and copy the resulting {data_dir}/cifar10 folder to {data_dir} on this machine "
        "(or use a CIFAR-10 JPEG tree via the dataset name 'folder:PATH')."),
    "imagenet2012": (
        "ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar (from image-net.org) in {data_dir}/downloads/manual/, then run\n"
        "  python -c \"import tensorflow_datasets as tfds; "
        "tfds.builder('imagenet2012', data_dir='{data_dir}').download_and_prepare()\""),
}


def check_prepared(name: str, data_dir: str | None = None):
  """Returns the prepared `tfds.core.DatasetBuilder` for `name`; FileNotFoundError if absent.

  `data_dir` None means TFDS's default ($TFDS_DATA_DIR, else ~/tensorflow_datasets).
  Only local files are inspected.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  root = data_dir or tfds.core.constants.DATA_DIR
  steps = _PREPARE.get(name, "Run tfds.builder('{name}', data_dir='{data_dir}')"
                       ".download_and_prepare() on a machine with network access.")
  raise FileNotFoundError(
      f"TFDS dataset {name!r} is not prepared: no dataset_info.json under {builder.data_dir}. "
      + steps.format(name=name, data_dir=root)
      + "\nThen pass data_dir (or set TFDS_DATA_DIR) to that directory.")


def load_in_memory(name: str, split: str, data_dir: str | None = None) -> arrays.ArrayDataset:
  """Loads a whole prepared split (e.g. cifar10 `train`/`test`) as uint8 arrays."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = check_prepared(name, data_dir)
  # Fixed-size batches: batch_size=-1 needs split sizes and aborts the process under mock_data.
  ds = builder.as_dataset(split=split, batch_size=10_000, shuffle_files=False)
  images, labels, ids = [], [], []
  for batch in tfds.as_numpy(ds):
    images.append(batch["image"])
    labels.append(batch["label"])
    if "id" in batch:
      ids.extend(i.decode() for i in batch["id"])
  return arrays.ArrayDataset(
      images=np.concatenate(images).astype(np.uint8),
      labels=np.concatenate(labels).astype(np.int32),
      class_names=list(builder.info.features["label"].names),
      filenames=ids or None,
      skipped=[])
