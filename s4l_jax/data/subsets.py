"""Class-balanced labeled subsets and the held-out validation set of a training split.

Spec strings (`config.labels`):
  * `all`: every example.
  * `<float>pct` (`10pct`, `1pct`, `0.5pct`): in each class c with n_c examples take
    max(1, round_half_up(f * n_c)) with f = float / 100, except where the dataset's label
    protocol says otherwise (`resolve_labels_spec`): on imagenet2012 `10pct` / `1pct` are
    S4L's exactly 128 / 13 images per class (128,000 / 13,000).
  * `<float>pct_proportional` (`10pct_proportional`): the proportional draw above on every
    dataset (on ImageNet ~73-130 per class for 10%, 7-13 for 1%).
  * `<int>` (`4000`): that many in total, total // C per class and the remainder one each to a
    seeded random choice of classes.
  * `<int>perclass` (`400perclass`): that many in every class.
  * `file:PATH`: the train examples listed in PATH, an S4L JSON list
    (`{"values": [file names]}`, `label_map_count_*_index_0`) or a text file with one file
    name per line (SimCLR `imagenet_subsets/*.txt`, = TFDS `imagenet2012_subset`). Needs
    per-example file names: image folders (paths relative to the dataset root; an entry
    `cat/000.jpg` or `train/cat/000.jpg` names one file, a base name `000.jpg` must be unique:
    `select_by_filenames`), cifar10 (TFDS `id`), imagenet2012 (`file_name`).

The computed draws are a pure function of (labels, spec, seed), like S4L's fixed
`label_map_count_*` lists (google-research/s4l) but computed rather than shipped; `file:` uses
such a list as is.

Validation specs (`config.input.validation`): `<int>` (`1000`), `<int>perclass`
(`1perclass`), `<float>pct` (`10pct`), with the per-class sizes of the labels specs above, or
`0` / `none` for no validation set. `split_train` carves it first, independently of the seed
(the same images for every seed and method), then draws the labeled subset from the rest;
with `file:PATH` labels the listed images are labeled and validation is carved from the rest.
"""
import dataclasses
import json
import os
import re

from absl import logging
import numpy as np

from s4l_jax.data import datasets

_PCT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)pct(?:_proportional)?$")
_TOTAL = re.compile(r"^(\d+)$")
_PERCLASS = re.compile(r"^(\d+)perclass$")
_NO_VALIDATION = ("0", "none")
# The validation draw's seed, in place of `config.seed`: the held-out images never change.
_VALIDATION_SEED = 8_675_309


def parse_labels_spec(spec: str) -> tuple[str, float | int | str | None]:
  """Parses a labels spec into (kind, value); kind in {all, pct, total, perclass, file}.

  For `pct` the value is the fraction in (0, 1], for `file` the path (not opened here).
  Raises ValueError for an invalid spec.
  """
  if spec == "all":
    return "all", None
  if spec.startswith("file:") and spec != "file:":
    return "file", spec.removeprefix("file:")
  if m := _PCT.match(spec):
    fraction = float(m.group(1)) / 100
    if not 0 < fraction <= 1:
      raise ValueError(f"Labels spec {spec!r}: percentage must be in (0, 100].")
    return "pct", fraction
  if m := _TOTAL.match(spec):
    if int(m.group(1)) <= 0:
      raise ValueError(f"Labels spec {spec!r}: total must be positive.")
    return "total", int(m.group(1))
  if m := _PERCLASS.match(spec):
    if int(m.group(1)) <= 0:
      raise ValueError(f"Labels spec {spec!r}: per-class count must be positive.")
    return "perclass", int(m.group(1))
  raise ValueError(
      f"Invalid labels spec {spec!r}: expected 'all', '<float>pct' (e.g. '10pct', "
      "'10pct_proportional'), "
      "'<int>' (e.g. '4000'), '<int>perclass' (e.g. '400perclass') or 'file:PATH'.")


def resolve_labels_spec(spec: str, dataset: str | None) -> str:
  """The spec `dataset`'s family draws for `spec`: its `label_protocol` entry (imagenet2012:
  `10pct` -> `128perclass`, `1pct` -> `13perclass`), else `spec` itself; `dataset` None:
  `spec`. `<float>pct_proportional` is `<float>pct`'s proportional draw on every dataset."""
  protocol = dict(datasets.get(dataset).label_protocol) if dataset else {}
  return protocol.get(spec, spec)


def select_labeled(labels: np.ndarray, spec: str, seed: int, num_classes: int,
                   filenames: list[str] | None = None,
                   class_names: list[str] | None = None) -> np.ndarray:
  """Returns sorted int64 indices into `labels` (N,) of the labeled subset for `spec`.

  Within each class the chosen examples are the first k of a permutation drawn from
  `np.random.default_rng([seed, c])`; for `<int>` specs the classes that get one extra example
  are drawn from `np.random.default_rng([seed, num_classes])`. `file:PATH` specs need
  `filenames` (N,), the examples' file names (see `select_by_filenames`). `class_names`
  (num_classes,): named in the error for a class with too few examples.
  """
  labels = np.asarray(labels)
  kind, value = parse_labels_spec(spec)
  if kind == "file":
    if filenames is None:
      raise ValueError(f"Labels spec {spec!r} needs per-example file names, which this dataset "
                       "does not have (use folder:PATH, cifar10 or imagenet2012).")
    return select_by_filenames(filenames, value)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D, got shape {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"Labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")
  if kind == "all":
    return np.arange(labels.size, dtype=np.int64)
  return _draw(labels, _wanted(kind, value, labels, seed, num_classes), seed,
               f"Labels spec {spec!r}", class_names)


def _wanted(kind: str, value, labels: np.ndarray, seed: int, num_classes: int) -> np.ndarray:
  """Examples to draw per class (num_classes,) int64 for a pct / perclass / total spec."""
  counts = np.bincount(labels, minlength=num_classes)
  if kind == "pct":
    return np.maximum(1, np.floor(value * counts + 0.5)).astype(np.int64)
  if kind == "perclass":
    return np.full(num_classes, value, np.int64)
  wanted = np.full(num_classes, value // num_classes, np.int64)
  extra = np.random.default_rng([seed, num_classes]).choice(
      num_classes, value % num_classes, replace=False)
  wanted[extra] += 1
  return wanted


def _draw(labels: np.ndarray, wanted: np.ndarray, seed: int, what: str,
          class_names: list[str] | None = None) -> np.ndarray:
  """Sorted int64 indices: in class c the first wanted[c] of a `default_rng([seed, c])`
  permutation of its members; ValueError naming `what` and the class (by its name in
  `class_names`, e.g. its folder, when given) if a class has too few."""
  counts = np.bincount(labels, minlength=len(wanted))
  short = np.flatnonzero(wanted > counts)
  if short.size:
    c = short[0]
    name = f"class {class_names[c]!r} (label {c})" if class_names else f"class {c}"
    raise ValueError(f"{what} asks for {wanted[c]} examples of {name}, which "
                     f"has only {counts[c]} ({short.size} classes short).")
  by_class = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
  chosen = [np.random.default_rng([seed, c]).permutation(members)[:wanted[c]]
            for c, members in enumerate(by_class)]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def parse_validation_spec(spec: str) -> tuple[str, float | int | None]:
  """(kind, value) of a validation spec; kind in {none, pct, total, perclass}.

  Raises ValueError naming `input.validation` for any other string (`all`, `file:`).
  """
  spec = str(spec)
  if spec in _NO_VALIDATION:
    return "none", None
  try:
    kind, value = parse_labels_spec(spec)
  except ValueError:
    kind = None
  if kind not in ("pct", "total", "perclass"):
    raise ValueError(f"input.validation={spec!r} is not a validation size: expected "
                     "'<int>' (e.g. '1000'), '<int>perclass' (e.g. '1perclass'), "
                     "'<float>pct' (e.g. '10pct'), or '0' / 'none' for no validation set.")
  return kind, value


def carve_validation(labels: np.ndarray, spec: str, num_classes: int,
                     exclude: np.ndarray | None = None,
                     class_names: list[str] | None = None) -> np.ndarray:
  """Sorted int64 indices into `labels` (N,) of the class-balanced validation set of `spec`.

  Drawn like `select_labeled` with the fixed seed `_VALIDATION_SEED` (never config.seed)
  from the examples not in `exclude` (the file-listed labeled images); per-class sizes of a
  `pct` spec are fractions of those examples (at least 1, 0 for an empty class). Empty for
  `0` / `none`.
  """
  labels = np.asarray(labels)
  kind, value = parse_validation_spec(spec)
  if kind == "none":
    return np.zeros(0, np.int64)
  pool = np.setdiff1d(np.arange(labels.size),
                      np.zeros(0, np.int64) if exclude is None else exclude)
  wanted = _wanted(kind, value, labels[pool], _VALIDATION_SEED, num_classes)
  if kind == "pct":  # a fraction of an empty class (a folder without images) is nothing
    wanted[np.bincount(labels[pool], minlength=num_classes) == 0] = 0
  left = "left once the labeled images are removed" if exclude is not None else "in train"
  try:
    chosen = _draw(labels[pool], wanted, _VALIDATION_SEED, f"input.validation={spec!r}",
                   class_names)
  except ValueError as e:
    raise ValueError(f"{e} Examples {left}: {pool.size}; use a smaller input.validation "
                     "(or 0 for none).") from None
  return pool[chosen]


@dataclasses.dataclass(frozen=True)
class TrainSplit:
  """Sorted int64 index sets into the train split; `validation` is disjoint from the others."""
  labeled: np.ndarray     # the labeled stream's examples
  unlabeled: np.ndarray   # the unlabeled stream's: every non-validation example (S4L)
  validation: np.ndarray  # held out: never trained on


def split_train(labels: np.ndarray, *, labels_spec: str, validation_spec: str, seed: int,
                num_classes: int, filenames: list[str] | None = None,
                dataset: str | None = None, class_names: list[str] | None = None) -> TrainSplit:
  """The validation set first (`carve_validation`, independent of `seed`), then the labeled
  subset of `labels_spec` drawn with `seed` from the remaining examples (`select_labeled` on
  them; `all`: all of them). `file:PATH` labels are the listed images, and validation is
  carved from the unlisted ones. With no validation set, `labeled` is exactly
  `select_labeled` on the whole split. `dataset` (the config's) applies its family's label
  protocol (`resolve_labels_spec`); `class_names` name a class that has too few examples.
  """
  labels = np.asarray(labels)
  labels_spec = resolve_labels_spec(labels_spec, dataset)
  listed = None
  if parse_labels_spec(labels_spec)[0] == "file":
    listed = select_labeled(labels, labels_spec, seed, num_classes, filenames)
  validation = carve_validation(labels, validation_spec, num_classes, exclude=listed,
                                class_names=class_names)
  rest = np.setdiff1d(np.arange(labels.size), validation)
  labeled = listed
  if labeled is None:
    try:
      labeled = rest[select_labeled(labels[rest], labels_spec, seed, num_classes,
                                    class_names=class_names)]
    except ValueError as e:
      if not validation.size:
        raise
      raise ValueError(f"{e} ({validation.size} train images are held out by "
                       f"input.validation={validation_spec!r}.)") from None
  return TrainSplit(labeled=labeled, unlabeled=rest, validation=validation)


def _read_filename_list(path: str) -> set[str]:
  """The file names listed in `path` ('/'-separated, as written): S4L JSON `{"values": [...]}`
  or one per line."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Labels file {path!r} does not exist.")
  with open(path) as f:
    text = f.read()
  if text.lstrip().startswith("{"):
    try:
      names = json.loads(text)["values"]
    except (json.JSONDecodeError, KeyError, TypeError):
      raise ValueError(f"Labels file {path!r} is not an S4L JSON list "
                       '{"values": [file names]}.') from None
  else:
    names = text.splitlines()
  names = {str(n).strip().replace("\\", "/") for n in names} - {""}
  if not names:
    raise ValueError(f"Labels file {path!r} lists no file names.")
  return names


def _parts(name) -> tuple[str, ...]:
  """Path components of a '/'-separated name (bytes or str), without '' and '.'."""
  name = name.decode() if isinstance(name, bytes) else str(name)
  return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def select_by_filenames(filenames: list[str], path: str) -> np.ndarray:
  """Sorted int64 indices of the train examples listed in `path`.

  `filenames`: each example's path relative to the dataset root (`train/cat/000.jpg`) or its
  id (`n01440764_10026.JPEG`), str or bytes. An entry and an example's name are compared on
  their trailing components, as many as the shorter has: `000.jpg` matches that file name in
  any folder, `cat/000.jpg` the one in class folder cat, `train/cat/000.jpg` (or a longer
  path ending so) that file. An entry naming several examples (a base name in two class
  folders) is an error that shows how to tell them apart; entries naming none are counted in
  a warning.
  """
  listed = sorted(_read_filename_list(path))
  names = [_parts(f) for f in filenames]
  longest = max((len(n) for n in names), default=1)
  depths = {min(len(_parts(e)), longest) for e in listed}
  index = {}  # trailing components -> example indices
  for i, parts in enumerate(names):
    for k in depths:
      if len(parts) >= k:
        index.setdefault(parts[-k:], []).append(i)
  found = {e: index.get(_parts(e)[-min(len(_parts(e)), longest):], []) for e in listed}
  ambiguous = [e for e, hits in found.items() if len(hits) > 1]
  if ambiguous:
    hits = found[ambiguous[0]]
    shown = ", ".join("/".join(names[i]) for i in hits[:3]) + (", ..." if len(hits) > 3 else "")
    raise ValueError(
        f"Labels file {path!r}: {ambiguous[0]!r} names {len(hits)} train images ({shown}); "
        f"list them with their class folder (e.g. {'/'.join(names[hits[0]][-2:])!r})"
        + (f" ({len(ambiguous)} such entries)" if len(ambiguous) > 1 else ""))
  indices = np.array(sorted(i for hits in found.values() for i in hits), np.int64)
  if not indices.size:
    example = "/".join(names[0]) if names else None
    raise ValueError(f"None of the {len(listed)} file names in {path!r} (e.g. "
                     f"{listed[0]!r}) is a train example (e.g. {example!r}).")
  missing = sum(not hits for hits in found.values())
  if missing:
    logging.warning("Labels file %s: %d of its %d file names are not train examples.", path,
                    missing, len(listed))
  logging.info("Labels file %s: %d labeled train examples.", path, indices.size)
  return indices
