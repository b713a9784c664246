"""The dataset registry: names, presets, pipelines; importing it imports no TensorFlow."""
import subprocess
import sys
from unittest import mock

import pytest

from s4l_jax.data import datasets, sources


def test_families_and_folder_paths():
  assert datasets.get("folder:/data/x").name == "folder"
  assert datasets.folder_root("folder:/data/x") == "/data/x"
  assert datasets.get("imagenet2012").test_split == "validation"
  assert [n for n, f in datasets.FAMILIES.items() if f.pipelines[0] == "tfdata"] == [
      "imagenet2012"]
  for name, family in datasets.FAMILIES.items():
    assert family.name == name and family.pipelines
    assert set(family.pipelines) <= set(datasets.PIPELINES)


@pytest.mark.parametrize("name", ["mnist", "folder", "folder:", "digits:/x", ""])
def test_unknown_name_lists_the_valid_ones(name):
  with pytest.raises(ValueError, match=rf"^Unknown dataset '{name}'; valid: imagenet2012, "
                     r"cifar10, digits, folder:PATH$"):
    datasets.get(name)


def test_fixed_class_counts_are_the_loaders():
  assert datasets.get("digits").num_classes == len(set(sources.load_split("digits",
                                                                          "test").labels))
  assert datasets.get("folder:/x").num_classes is None


@pytest.mark.parametrize("dataset, pipeline, match", [
    ("imagenet2012", "memory", r"^imagenet2012 cannot use input.pipeline=memory: set "
     r"input.pipeline=tfdata$"),
    ("cifar10", "tfdata", r"set input.pipeline=memory$"),
    ("folder:/x", "disk", r"^input.pipeline must be one of memory, tfdata, got 'disk'$"),
])
def test_check_pipeline(dataset, pipeline, match):
  with pytest.raises(ValueError, match=match):
    datasets.check_pipeline(dataset, pipeline)
  datasets.check_pipeline("folder:/x", "tfdata")
  datasets.check_pipeline("folder:/x", "memory")


@pytest.mark.tf
@pytest.mark.parametrize("dataset, pipeline, needs", [
    ("imagenet2012", "tfdata", True), ("cifar10", "memory", True), ("digits", "memory", False),
    ("folder:/x", "memory", False), ("folder:/x", "tfdata", True)])
def test_missing_tensorflow_fails_in_one_line(dataset, pipeline, needs):
  assert datasets.get(dataset).needs_tensorflow(pipeline) == needs
  datasets.check_tensorflow(dataset, pipeline)  # installed here
  with mock.patch("importlib.util.find_spec", return_value=None):
    if needs:
      with pytest.raises(ValueError, match=rf"^{dataset} with input.pipeline={pipeline} needs "
                         r"TensorFlow and tensorflow_datasets: pip install -e '.\[tf\]'$"):
        datasets.check_tensorflow(dataset, pipeline)
    else:
      datasets.check_tensorflow(dataset, pipeline)


def test_import_does_not_import_tensorflow():
  code = ("import sys; from s4l_jax import config_lib; from s4l_jax.data import datasets; "
          "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
