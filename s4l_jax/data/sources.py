"""In-memory image datasets as uint8 arrays; TensorFlow is imported only for TFDS names.

Names accepted by `load_split`:
  * `digits`: scikit-learn's 1,797 8x8 grey digits (values 0..16) scaled to uint8 0..255,
    resized bilinearly to `image_size` (default 32) and replicated to RGB. `train`/`test` is a
    fixed stratified 80/20 split (`train_test_split(..., random_state=0)`): 1,437 / 360.
  * `folder:PATH`: PATH/<split>/<class>/*.jpg|jpeg|png; classes are the sorted subfolders of
    PATH/train, for every split; hidden files and folders (`.DS_Store`, `.ipynb_checkpoints`)
    are ignored (`strict_data` too). Images are read as
    the viewer shows them (`_to_rgb`: EXIF orientation applied, 16-bit scaled to 8, grey,
    palette and CMYK made RGB, transparent pixels composited over black), then resized to
    `image_size` square without a crop: non-square ones are squashed (one warning gives
    their count).
  * `cifar10`: a prepared TFDS dataset, via `tfds_sources`.
`imagenet2012` is streamed through tf.data, not loaded here.
"""
import concurrent.futures
import os

from absl import logging
import numpy as np

from s4l_jax.data import arrays, datasets

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_DIGITS_SPLIT_SEED = 0


def class_names(name: str, data_dir: str | None = None) -> list[str]:
  """Class names of dataset `name` in label order, from folder names or TFDS metadata only."""
  family = datasets.get(name)
  if family.source == "sklearn":
    return [str(d) for d in range(family.num_classes)]
  if family.source == "folder":
    return _folder_classes(datasets.folder_root(name))
  from s4l_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  return list(tfds_sources.check_prepared(name, data_dir).info.features["label"].names)


def load_split(name: str, split: str, *, image_size: int | None = None,
               data_dir: str | None = None, strict: bool = False) -> arrays.ArrayDataset:
  """Loads split `split` of dataset `name` into memory.

  Args:
    name: `digits`, `folder:PATH` or `cifar10`.
    split: `train` or `test` (for folders: any subfolder of PATH).
    image_size: square output side in pixels; None keeps the stored size (digits: 32).
    data_dir: TFDS data directory (TFDS names only).
    strict: folders only; raise ValueError on the first unreadable file instead of skipping.
  """
  family = datasets.get(name)
  if "memory" not in family.pipelines:
    raise ValueError(f"{name!r} is not an in-memory dataset: it streams via tf.data "
                     "(see tfds_sources.check_prepared).")
  if family.source == "sklearn":
    return _load_digits(split, image_size or 32)
  if family.source == "folder":
    return _load_folder(datasets.folder_root(name), split, image_size, strict)
  from s4l_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  ds = tfds_sources.load_in_memory(name, split, data_dir)
  if image_size and image_size != ds.images.shape[1]:
    ds.images = _resize(ds.images, image_size)
  return ds


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 (N, H, W, C) with C in {1, 3} to (N, size, size, C)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out[i] = np.asarray(pil.resize((size, size), Image.BILINEAR)).reshape(size, size, -1)
  return out


def _load_digits(split: str, image_size: int) -> arrays.ArrayDataset:
  """sklearn digits, stratified 80/20 train/test split from a fixed seed."""
  # pylint: disable-next=g-import-not-at-top
  from sklearn import datasets as sklearn_datasets, model_selection
  digits = sklearn_datasets.load_digits()
  indices = model_selection.train_test_split(
      np.arange(len(digits.target)), test_size=0.2, stratify=digits.target,
      random_state=_DIGITS_SPLIT_SEED)
  if split not in ("train", "test"):
    raise ValueError(f"digits has splits 'train' and 'test', not {split!r}.")
  idx = np.sort(indices[0 if split == "train" else 1])
  grey = np.round(digits.images[idx] * (255 / 16)).astype(np.uint8)[..., None]
  if image_size != grey.shape[1]:
    grey = _resize(grey, image_size)
  return arrays.ArrayDataset(images=np.repeat(grey, 3, axis=-1),
                             labels=digits.target[idx].astype(np.int32),
                             class_names=class_names("digits"), filenames=None, skipped=[])


def _layout_error(path: str, what: str) -> ValueError:
  return ValueError(f"{what}; expected the layout {path}/<split>/<class>/*.jpg|jpeg|png with "
                    "classes = the subfolders of <split>=train.")


def _folder_classes(root: str) -> list[str]:
  train = os.path.join(root, "train")
  if not os.path.isdir(train):
    raise _layout_error(root, f"Image folder {train} does not exist")
  classes = sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
  if not classes:
    raise _layout_error(root, f"Image folder {train} has no class subfolders")
  return classes


_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L")  # PIL's modes of a 16-bit grey PNG


def _to_rgb(image):
  """A PIL image as 8-bit RGB, as an image viewer shows it: EXIF orientation applied; 16-bit
  grey scaled by 255/65535 (not clipped at 255); an alpha channel (RGBA, LA, a palette with
  a transparent colour) composited over black, so a fully transparent pixel is (0, 0, 0)."""
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  image = ImageOps.exif_transpose(image)
  if image.mode in _SIXTEEN_BIT_MODES:
    grey = np.asarray(image, np.float64) * (255 / 65535)
    image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8), "L")
  if image.mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
    rgba = image.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    image = Image.alpha_composite(black, rgba)
  return image if image.mode == "RGB" else image.convert("RGB")


def _decode(path: str, image_size: int | None) -> tuple[np.ndarray, bool] | None:
  """(uint8 RGB (H, W, 3), whether a non-square image was squashed to image_size square);
  None if the file is not a readable image."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not path.lower().endswith(IMAGE_EXTENSIONS):
    return None
  try:
    with Image.open(path, formats=("JPEG", "PNG")) as image:
      image.load()
      image = _to_rgb(image)
      squashed = bool(image_size) and image.width != image.height
      if image_size and image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.BILINEAR)
      return np.asarray(image), squashed
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
    return None


def _decode_chunk(paths: list[str], image_size: int | None) -> list[tuple | None]:
  return [_decode(p, image_size) for p in paths]


def _load_folder(root: str, split: str, image_size: int | None,
                 strict: bool) -> arrays.ArrayDataset:
  """Reads root/<split>/<class>/* with PIL in a thread pool."""
  classes = _folder_classes(root)
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise _layout_error(root, f"Split folder {split_dir} does not exist")
  unknown = sorted(e.name for e in os.scandir(split_dir)
                   if e.is_dir() and not e.name.startswith(".") and e.name not in classes)
  if unknown:
    raise _layout_error(root, f"{split_dir} has class folders {unknown} not in train")

  paths, labels, empty = [], [], []
  for label, cls in enumerate(classes):
    cls_dir = os.path.join(split_dir, cls)
    files = sorted(e.name for e in os.scandir(cls_dir)
                   if e.is_file() and not e.name.startswith(".")) if os.path.isdir(cls_dir) else []
    if not files:
      empty.append(cls)
    paths.extend(os.path.join(cls_dir, f) for f in files)
    labels.extend([label] * len(files))
  if empty:
    logging.warning("Image folder %s: %d empty or missing class folders: %s", split_dir,
                    len(empty), empty)

  chunk = 512
  chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
  with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
    decoded = [a for part in pool.map(_decode_chunk, chunks, [image_size] * len(chunks))
               for a in part]

  keep = [i for i, a in enumerate(decoded) if a is not None]
  skipped = [paths[i] for i, a in enumerate(decoded) if a is None]
  if skipped and strict:
    raise ValueError(f"Unreadable or non-image file {skipped[0]} ({len(skipped)} in "
                     f"{split_dir}; strict=True).")
  if skipped:
    logging.warning("Image folder %s: skipped %d unreadable or non-image files, e.g. %s",
                    split_dir, len(skipped), skipped[:3])
  if not keep:
    raise ValueError(f"No readable images in {split_dir}.")
  squashed = sum(decoded[i][1] for i in keep)
  if squashed:
    logging.warning("Image folder %s: %d of %d images are not square; squashed to %dx%d (no "
                    "crop)", split_dir, squashed, len(keep), image_size, image_size)
  shapes = {decoded[i][0].shape for i in keep}
  if len(shapes) > 1:
    raise ValueError(f"Images in {split_dir} have different sizes {sorted(shapes)[:3]}...; "
                     "pass image_size.")
  return arrays.ArrayDataset(
      images=np.stack([decoded[i][0] for i in keep]),
      labels=np.asarray([labels[i] for i in keep], np.int32),
      class_names=classes,
      filenames=[os.path.relpath(paths[i], root) for i in keep],
      skipped=skipped)
