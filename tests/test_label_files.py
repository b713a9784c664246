"""`labels=file:PATH`: S4L JSON and SimCLR text lists of labeled file names."""
import json
import os
from unittest import mock

import numpy as np
import pytest

from s4l_jax.data import factory
from s4l_jax.data import subsets
from testing_utils import load_config, tiny, write_image_folder

CLASSES = ("ant", "bee", "cat")
# Each list: a full path, names from two classes, a blank line / a name that is no example.
LISTS = {
    "json": ('{"values": ["ant_000.jpg", "cat_003.png", "nope.jpg"]}',
             ["train/ant/ant_000.jpg", "train/cat/cat_003.png"]),
    "txt": ("bee_001.png\n/data/train/ant/ant_002.jpg\n\ncat_000.jpg\n",
            ["train/ant/ant_002.jpg", "train/bee/bee_001.png", "train/cat/cat_000.jpg"]),
}


@pytest.fixture(scope="module", name="folder")
def folder_fixture(tmp_path_factory):
  """write_image_folder with unique basenames, like ImageNet's: train/ant/ant_000.jpg."""
  root = write_image_folder(tmp_path_factory.mktemp("images"), CLASSES, per_class=(4, 1),
                            size=8)
  for split in ("train", "test"):
    for name in CLASSES:
      directory = os.path.join(root, split, name)
      for f in os.listdir(directory):
        os.rename(os.path.join(directory, f), os.path.join(directory, f"{name}_{f}"))
  return root


def _write(tmp_path, text, name="list.txt"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _config(dataset, path, pipeline="memory"):
  config = tiny(load_config("supervised", f"dataset={dataset},labels=file:{path}"), batch=2,
                image_size=8)
  config.input.pipeline = pipeline
  return config


def test_parse_labels_spec():
  assert subsets.parse_labels_spec("file:/x.json") == ("file", "/x.json")
  with pytest.raises(ValueError, match="file:PATH"):
    subsets.parse_labels_spec("file:")


@pytest.mark.parametrize("fmt", ["json", "txt"])
def test_in_memory_pipeline(folder, tmp_path, fmt):
  text, expected = LISTS[fmt]
  path = _write(tmp_path, text, f"list.{fmt}")
  data = factory.make_pipeline(_config(f"folder:{folder}", path))
  assert data.num_labeled == len(expected)
  assert [data.train.filenames[i] for i in data.labeled_indices] == expected
  batch = data.train_batch(0)["labeled"]
  assert set(batch["label"]) <= {CLASSES.index(p.split("/")[1]) for p in expected}


@pytest.mark.tf
@pytest.mark.parametrize("fmt", ["json", "txt"])
def test_tfds_pipeline(folder, tmp_path, fmt):
  text, expected = LISTS[fmt]
  path = _write(tmp_path, text, f"list.{fmt}")
  data = factory.make_pipeline(_config(f"folder:{folder}", path, "tfdata"))
  paths = data._source._paths["train"][data.labeled_indices]  # pylint: disable=protected-access
  assert sorted(os.path.relpath(p, folder) for p in paths) == expected  # ImageFolder order


@pytest.mark.tf
def test_tfds_builder_file_names(tmp_path):
  """imagenet2012 (mock data): names come from the `file_name` feature."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from s4l_jax.data import tfds_pipeline  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=6), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    _, names = tfds_pipeline._TfdsSource(  # pylint: disable=protected-access
        "imagenet2012", str(tmp_path)).scan("train", filenames=True)
    path = _write(tmp_path, json.dumps({"values": [names[4], names[1]]}), "list.json")
    config = _config("imagenet2012", path, "tfdata")
    config.data_dir = str(tmp_path)
    config.input.validation = "0"  # 1 per class needs 1,000 images
    data = factory.make_pipeline(config)
  np.testing.assert_array_equal(data.labeled_indices, [1, 4])


@pytest.mark.parametrize("text,error,match", [
    (None, FileNotFoundError, "does not exist"),
    ("\n \n", ValueError, "lists no file names"),
    ('{"values": []}', ValueError, "lists no file names"),
    ('{"names": ["a.jpg"]}', ValueError, "not an S4L JSON list"),
    ("x.jpg\ny.jpg\n", ValueError, "None of the 2 file names"),
])
def test_errors(tmp_path, text, error, match):
  path = str(tmp_path / "absent.txt") if text is None else _write(tmp_path, text)
  with pytest.raises(error, match=match):
    subsets.select_by_filenames(["train/a/0.jpg", "train/b/1.jpg"], path)


def test_missing_names_are_logged(tmp_path):
  path = _write(tmp_path, "1.jpg\n2.jpg\n")
  with mock.patch.object(subsets.logging, "warning") as warning:
    idx = subsets.select_by_filenames(["train/a/0.jpg", b"train/b/1.jpg"], path)
  np.testing.assert_array_equal(idx, [1])
  assert idx.dtype == np.int64 and warning.call_args[0][2:] == (1, 2)


def test_dataset_without_file_names(tmp_path):
  path = _write(tmp_path, "0.jpg\n")
  with pytest.raises(ValueError, match="needs per-example file names"):
    factory.make_pipeline(_config("digits", path))


@pytest.fixture(scope="module", name="same_names")
def same_names_fixture(tmp_path_factory):
  """write_image_folder as is: every class folder holds 000.jpg, 001.png, ..."""
  return write_image_folder(tmp_path_factory.mktemp("same"), CLASSES, per_class=(3, 1), size=8)


@pytest.mark.parametrize("pipeline", ["memory", pytest.param("tfdata", marks=pytest.mark.tf)])
def test_entries_with_folders_name_one_file_each(same_names, tmp_path, pipeline):
  """The issue's list: 3 entries with folders label 3 images, not the 9 sharing base names."""
  path = _write(tmp_path, "train/ant/000.jpg\nbee/001.png\n/elsewhere/train/cat/002.jpg\n")
  data = factory.make_pipeline(_config(f"folder:{same_names}", path, pipeline))
  assert data.num_labeled == 3
  if pipeline == "memory":
    names = data.train.filenames
  else:
    names = data._source.scan("train", filenames=True)[1]  # pylint: disable=protected-access
  assert sorted(names[i] for i in data.labeled_indices) == [
      "train/ant/000.jpg", "train/bee/001.png", "train/cat/002.jpg"]


def test_a_base_name_in_several_folders_fails_in_one_line(tmp_path):
  path = _write(tmp_path, "000.jpg\nbee/001.png\n")
  with pytest.raises(ValueError) as e:
    subsets.select_by_filenames(["train/ant/000.jpg", "train/bee/000.jpg", "train/bee/001.png"],
                                path)
  assert str(e.value) == (f"Labels file {path!r}: '000.jpg' names 2 train images "
                          "(train/ant/000.jpg, train/bee/000.jpg); list them with their class "
                          "folder (e.g. 'ant/000.jpg')")
