"""Tests for s4l_jax.data.subsets."""
import numpy as np
import pytest

from s4l_jax.data import subsets


def _labels(per_class=(50, 60, 70, 80), seed=0):
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
  return np.random.default_rng(seed).permutation(labels).astype(np.int32)


@pytest.mark.parametrize("spec,expected", [
    ("all", [50, 60, 70, 80]),
    ("10pct", [5, 6, 7, 8]),
    ("1pct", [1, 1, 1, 1]),  # round(0.5..0.8) -> at least 1.
    ("2.5pct", [1, 2, 2, 2]),  # 1.25, 1.5, 1.75, 2.0 rounded half up.
    ("20perclass", [20, 20, 20, 20]),
    ("40", [10, 10, 10, 10]),
])
def test_sizes_and_balance(spec, expected):
  labels = _labels()
  idx = subsets.select_labeled(labels, spec, seed=3, num_classes=4)
  assert idx.dtype == np.int64
  np.testing.assert_array_equal(idx, np.unique(idx))  # Sorted, no duplicates.
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=4), expected)


def test_total_with_remainder_is_balanced():
  labels = _labels()
  idx = subsets.select_labeled(labels, "42", seed=1, num_classes=4)
  counts = np.bincount(labels[idx], minlength=4)
  assert counts.sum() == 42 and sorted(counts) == [10, 10, 11, 11]


def test_determinism_and_seed():
  labels = _labels()
  a = subsets.select_labeled(labels, "10perclass", seed=0, num_classes=4)
  b = subsets.select_labeled(labels.copy(), "10perclass", seed=0, num_classes=4)
  c = subsets.select_labeled(labels, "10perclass", seed=1, num_classes=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_parse_labels_spec():
  assert subsets.parse_labels_spec("all") == ("all", None)
  assert subsets.parse_labels_spec("10pct") == ("pct", 0.1)
  assert subsets.parse_labels_spec("4000") == ("total", 4000)
  assert subsets.parse_labels_spec("400perclass") == ("perclass", 400)


@pytest.mark.parametrize("spec", ["", "10%", "pct", "0pct", "101pct", "0", "-5", "4k",
                                  "0perclass", "10 perclass"])
def test_invalid_spec(spec):
  with pytest.raises(ValueError, match="spec"):
    subsets.parse_labels_spec(spec)


@pytest.mark.parametrize("spec", ["51perclass", "1000"])
def test_too_many(spec):
  with pytest.raises(ValueError, match=r"has only 50"):
    subsets.select_labeled(_labels(), spec, seed=0, num_classes=4)


def test_labels_out_of_range():
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    subsets.select_labeled(_labels(), "all", seed=0, num_classes=3)
