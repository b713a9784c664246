"""Class-balanced labeled subsets of a training split.

Spec strings (`config.labels`):
  * `all`: every example.
  * `<float>pct` (`10pct`, `1pct`, `0.5pct`): in each class c with n_c examples take
    max(1, round_half_up(f * n_c)) with f = float / 100.
  * `<int>` (`4000`): that many in total, total // C per class and the remainder one each to a
    seeded random choice of classes.
  * `<int>perclass` (`400perclass`): that many in every class.

The draw is a pure function of (labels, spec, seed), like S4L's fixed `label_map_count_*`
lists (methods.md 1.1) but computed rather than shipped.
"""
import re

import numpy as np

_PCT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)pct$")
_TOTAL = re.compile(r"^(\d+)$")
_PERCLASS = re.compile(r"^(\d+)perclass$")


def parse_labels_spec(spec: str) -> tuple[str, float | int | None]:
  """Parses a labels spec into (kind, value); kind in {all, pct, total, perclass}.

  For `pct` the value is the fraction in (0, 1]. Raises ValueError for an invalid spec.
  """
  if spec == "all":
    return "all", None
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
      f"Invalid labels spec {spec!r}: expected 'all', '<float>pct' (e.g. '10pct'), "
      "'<int>' (e.g. '4000') or '<int>perclass' (e.g. '400perclass').")


def select_labeled(labels: np.ndarray, spec: str, seed: int, num_classes: int) -> np.ndarray:
  """Returns sorted int64 indices into `labels` (N,) of the labeled subset for `spec`.

  Within each class the chosen examples are the first k of a permutation drawn from
  `np.random.default_rng([seed, c])`; for `<int>` specs the classes that get one extra example
  are drawn from `np.random.default_rng([seed, num_classes])`.
  """
  labels = np.asarray(labels)
  kind, value = parse_labels_spec(spec)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D, got shape {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"Labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")
  if kind == "all":
    return np.arange(labels.size, dtype=np.int64)

  counts = np.bincount(labels, minlength=num_classes)
  if kind == "pct":
    wanted = np.maximum(1, np.floor(value * counts + 0.5)).astype(np.int64)
  elif kind == "perclass":
    wanted = np.full(num_classes, value, np.int64)
  else:
    wanted = np.full(num_classes, value // num_classes, np.int64)
    extra = np.random.default_rng([seed, num_classes]).choice(
        num_classes, value % num_classes, replace=False)
    wanted[extra] += 1

  short = np.flatnonzero(wanted > counts)
  if short.size:
    c = short[0]
    raise ValueError(f"Labels spec {spec!r} asks for {wanted[c]} examples of class {c}, which "
                     f"has only {counts[c]} ({short.size} classes short).")
  by_class = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
  chosen = [np.random.default_rng([seed, c]).permutation(members)[:wanted[c]]
            for c, members in enumerate(by_class)]
  return np.sort(np.concatenate(chosen)).astype(np.int64)
