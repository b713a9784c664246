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
  assert subsets.parse_labels_spec("1pct_proportional") == ("pct", 0.01)
  assert subsets.parse_labels_spec("4000") == ("total", 4000)
  assert subsets.parse_labels_spec("400perclass") == ("perclass", 400)


@pytest.mark.parametrize("spec", ["", "10%", "pct", "0pct", "101pct", "0", "-5", "4k",
                                  "0perclass", "10 perclass", "10pct_prop",
                                  "_proportional", "10perclass_proportional"])
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


@pytest.mark.parametrize("spec,expected", [
    ("8", [2, 2, 2, 2]), ("3perclass", [3, 3, 3, 3]), ("10pct", [5, 6, 7, 8])])
def test_validation_is_class_balanced_and_of_the_requested_size(spec, expected):
  labels = _labels()
  split = subsets.split_train(labels, labels_spec="10perclass", validation_spec=spec, seed=0,
                              num_classes=4)
  np.testing.assert_array_equal(np.bincount(labels[split.validation], minlength=4), expected)
  np.testing.assert_array_equal(np.bincount(labels[split.labeled], minlength=4), [10] * 4)


@pytest.mark.parametrize("labels_spec", ["10pct", "9", "10perclass", "all"])
def test_validation_is_disjoint_from_training_and_fixed_across_seeds(labels_spec):
  labels = _labels()
  splits = [subsets.split_train(labels, labels_spec=labels_spec, validation_spec="10pct",
                                seed=seed, num_classes=4) for seed in (0, 1, 2)]
  everything = np.arange(labels.size)
  for s in splits:
    np.testing.assert_array_equal(s.validation, splits[0].validation)  # not seed-dependent
    assert not np.intersect1d(s.validation, s.labeled).size
    np.testing.assert_array_equal(s.unlabeled, np.setdiff1d(everything, s.validation))
    np.testing.assert_array_equal(np.union1d(s.unlabeled, s.validation), everything)
  if labels_spec == "all":  # every non-validation image is labeled
    np.testing.assert_array_equal(splits[0].labeled, splits[0].unlabeled)
  else:
    assert not np.array_equal(splits[0].labeled, splits[1].labeled)


@pytest.mark.parametrize("labels_spec", ["10pct", "42", "10perclass", "all"])
@pytest.mark.parametrize("none", ["0", "none"])
def test_no_validation_keeps_the_labeled_subset(labels_spec, none):
  labels = _labels()
  split = subsets.split_train(labels, labels_spec=labels_spec, validation_spec=none, seed=3,
                              num_classes=4)
  assert split.validation.size == 0 and split.validation.dtype == np.int64
  np.testing.assert_array_equal(split.unlabeled, np.arange(labels.size))
  np.testing.assert_array_equal(split.labeled,
                                subsets.select_labeled(labels, labels_spec, 3, 4))


def test_validation_with_a_file_list_comes_from_the_unlisted_images(tmp_path):
  labels = np.repeat(np.arange(2), 5).astype(np.int32)
  names = [f"train/c{c}/{i}.jpg" for i, c in enumerate(labels)]
  (tmp_path / "list.txt").write_text("0.jpg\n1.jpg\n7.jpg\n")
  splits = [subsets.split_train(labels, labels_spec=f"file:{tmp_path}/list.txt",
                                validation_spec="2perclass", seed=seed, num_classes=2,
                                filenames=names) for seed in (0, 1)]
  np.testing.assert_array_equal(splits[0].labeled, [0, 1, 7])
  np.testing.assert_array_equal(splits[0].validation, splits[1].validation)
  assert not np.intersect1d(splits[0].validation, [0, 1, 7]).size
  np.testing.assert_array_equal(np.bincount(labels[splits[0].validation]), [2, 2])
  with pytest.raises(ValueError, match=r"input.validation='4perclass' asks for 4 examples of "
                     r"class 0, which has only 3 .* once the labeled images are removed"):
    subsets.split_train(labels, labels_spec=f"file:{tmp_path}/list.txt",
                        validation_spec="4perclass", seed=0, num_classes=2, filenames=names)


@pytest.mark.parametrize("spec", ["all", "file:x.txt", "10%", "-1", "0pct", "one"])
def test_invalid_validation_spec(spec):
  with pytest.raises(ValueError, match=rf"input.validation={spec!r}.*'1perclass'"):
    subsets.parse_validation_spec(spec)


def test_validation_too_large_for_the_labeled_subset():
  with pytest.raises(ValueError, match="asks for 11 examples of class 0, which has only 10.*"
                     "160 train images are held out by input.validation='40perclass'"):
    subsets.split_train(_labels(), labels_spec="11perclass", validation_spec="40perclass",
                        seed=0, num_classes=4)
  with pytest.raises(ValueError, match="input.validation='51perclass'.*has only 50"):
    subsets.split_train(_labels(), labels_spec="all", validation_spec="51perclass", seed=0,
                        num_classes=4)


def test_pct_validation_skips_empty_classes():
  labels = np.repeat([0, 2], 10).astype(np.int32)  # class 1 has no examples
  split = subsets.split_train(labels, labels_spec="all", validation_spec="10pct", seed=0,
                              num_classes=3)
  np.testing.assert_array_equal(np.bincount(labels[split.validation], minlength=3), [1, 0, 1])
  with pytest.raises(ValueError, match="asks for 1 examples of class 1, which has only 0"):
    subsets.split_train(labels, labels_spec="all", validation_spec="1perclass", seed=0,
                        num_classes=3)


def test_short_class_is_named_by_its_name_when_given():
  labels = np.repeat([0, 2], 10).astype(np.int32)  # class 1 (a folder "bee") has no examples
  with pytest.raises(ValueError, match=r"asks for 2 examples of class 'bee' \(label 1\), "
                     "which has only 0"):
    subsets.split_train(labels, labels_spec="2perclass", validation_spec="0", seed=0,
                        num_classes=3, class_names=["ant", "bee", "cat"])
  with pytest.raises(ValueError, match=r"input.validation='1perclass' asks for 1 examples of "
                     r"class 'bee' \(label 1\)"):
    subsets.split_train(labels, labels_spec="all", validation_spec="1perclass", seed=0,
                        num_classes=3, class_names=["ant", "bee", "cat"])


def _imagenet_like(seed=0):
  """1,000 classes of 732-1,300 images (ImageNet's range), shuffled."""
  counts = np.random.default_rng(seed).integers(732, 1301, 1000)
  counts[:2] = 732, 1300
  return _labels(tuple(counts), seed)


@pytest.mark.slow
@pytest.mark.parametrize("spec,per_class", [("10pct", 128), ("1pct", 13)])
def test_imagenet_pct_is_the_s4l_protocol(spec, per_class):
  labels = _imagenet_like()
  split = subsets.split_train(labels, labels_spec=spec, validation_spec="1000", seed=2,
                              num_classes=1000, dataset="imagenet2012")
  np.testing.assert_array_equal(np.bincount(labels[split.labeled], minlength=1000), per_class)
  assert not np.intersect1d(split.labeled, split.validation).size
  again = subsets.split_train(labels, labels_spec=spec, validation_spec="1000", seed=2,
                              num_classes=1000, dataset="imagenet2012")
  np.testing.assert_array_equal(split.labeled, again.labeled)
  other = subsets.split_train(labels, labels_spec=spec, validation_spec="1000", seed=3,
                              num_classes=1000, dataset="imagenet2012")
  assert not np.array_equal(split.labeled, other.labeled)


def test_proportional_draw_stays_reachable_on_imagenet():
  labels = _imagenet_like()
  counts = np.bincount(labels, minlength=1000)
  idx = subsets.split_train(labels, labels_spec="1pct_proportional", validation_spec="0",
                            seed=0, num_classes=1000, dataset="imagenet2012").labeled
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=1000),
                                np.floor(0.01 * counts + 0.5))
  assert np.bincount(labels[idx], minlength=1000)[0] == 7  # 732 images: 7 labels, not 13
  np.testing.assert_array_equal(  # the spec `1pct` on a dataset with no label protocol
      idx, subsets.select_labeled(labels, "1pct", seed=0, num_classes=1000))


@pytest.mark.parametrize("dataset", ["digits", "cifar10", "folder:/x", None])
@pytest.mark.parametrize("spec", ["10pct", "1pct"])
def test_other_datasets_keep_the_proportional_pct(dataset, spec):
  labels = _labels()
  split = subsets.split_train(labels, labels_spec=spec, validation_spec="0", seed=3,
                              num_classes=4, dataset=dataset)
  np.testing.assert_array_equal(split.labeled,
                                subsets.select_labeled(labels, spec, seed=3, num_classes=4))
  np.testing.assert_array_equal(  # `_proportional` is the same draw everywhere
      split.labeled, subsets.select_labeled(labels, f"{spec}_proportional", seed=3,
                                            num_classes=4))


def test_resolve_labels_spec():
  assert subsets.resolve_labels_spec("10pct", "imagenet2012") == "128perclass"
  assert subsets.resolve_labels_spec("1pct", "imagenet2012") == "13perclass"
  for spec in ("10pct_proportional", "5pct", "all", "file:x.json", "13000"):
    assert subsets.resolve_labels_spec(spec, "imagenet2012") == spec
  assert subsets.resolve_labels_spec("10pct", "digits") == "10pct"
  with pytest.raises(ValueError, match="Unknown dataset"):
    subsets.resolve_labels_spec("10pct", "mnist")
