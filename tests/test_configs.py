"""Every config loads for each supported arg; typos fail at once, naming the key."""
import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from s4l_jax import config_lib
from s4l_jax.data import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
DATASETS = ["imagenet2012", "cifar10", "digits", "folder:/data/cifar10"]
LABELS = ["10pct", "1pct", "4000", "400perclass"]
REQUIRED_ARGS = {"linear_eval": "pretrained=/runs/rotation/export,",
                 "finetune": "pretrained=/runs/rotation/export,",
                 "pseudo_label": "teacher=/runs/supervised/export,"}


def trainer_configs(c):
  """The single-run configs inside `c` (itself, or each stage of a pipeline)."""
  return list(c.stages.values()) if "stages" in c else [c]


def load(path, arg):
  spec = importlib.util.spec_from_file_location("cfg", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("labels", LABELS)
def test_config_loads(path, dataset, labels):
  name = os.path.basename(path)[:-3]
  for c in trainer_configs(load(path, REQUIRED_ARGS.get(name, "") +
                                f"dataset={dataset},labels={labels}")):
    assert c.dataset == dataset and c.labels == labels
    assert c.input.labeled.batch_size > 0 and c.model.name
    assert config_lib.total_steps(c, num_labeled=10_000) > 0


def test_parse_arg_types_and_errors():
  a = config_lib.parse_arg("steps=5,labels=1pct,fast", steps=0, labels="10pct", fast=False,
                           lr=0.1)
  assert (a.steps, a.labels, a.fast, a.lr) == (5, "1pct", True, 0.1)
  with pytest.raises(ValueError, match="labls"):
    config_lib.parse_arg("labls=1pct", labels="10pct")
  with pytest.raises(ValueError, match="steps"):
    config_lib.parse_arg("steps=many", steps=0)


def test_supervised_imagenet_rows_match_paper():
  """methods.md 2.6: 10% lr 0.1 wd 1e-3 decays 140/160/180 end 200; 1% lr 0.01 wd 1e-2 ..."""
  path = os.path.join(ROOT, "configs", "supervised.py")
  c10, c1 = load(path, "labels=10pct"), load(path, "labels=1pct")
  assert (c10.lr.base, c10.optimizer.weight_decay, tuple(c10.lr.decay_epochs),
          c10.total_epochs, c10.input.labeled.batch_size) == (0.1, 1e-3, (140, 160, 180), 200,
                                                               256)
  assert (c1.lr.base, c1.optimizer.weight_decay, tuple(c1.lr.decay_epochs),
          c1.total_epochs) == (0.01, 1e-2, (700, 800, 900), 1000)
  # 128,000 labeled images at batch 256: 500 steps/epoch -> 100k steps; 1%: 13,000 -> 50k.
  assert config_lib.total_steps(c10, 128_000) == 100_000
  assert config_lib.total_steps(c1, 13_000) == 50_000
  assert c10.model.name == "resnet50v2" and c10.model.filters_factor == 4


def test_supervised_1pct_imagenet_adds_hsv_noise_like_the_released_config():
  """supervised_imagenet_1p.sh: inception crop, flip, hsvnoise; the 10% row and digits keep
  the plain train view."""
  path = os.path.join(ROOT, "configs", "supervised.py")
  assert load(path, "labels=1pct").input.labeled.view == "inception_crop|flip|hsv_noise"
  assert load(path, "labels=10pct").input.labeled.view == "train"
  assert load(path, "labels=1pct,dataset=digits").input.labeled.view == "train"
  spec = views.resolve("inception_crop|flip|hsv_noise", "inception")
  assert spec.crop == "inception_crop" and spec.ops == ("flip", "hsv_noise")


@pytest.mark.parametrize("override, key", [
    ("--config.lr.bsae=0.1", "bsae"),
    ("--config=configs/supervised.py:labls=1pct", "labls"),
])
def test_bad_key_fails_fast_naming_it(tmp_path, override, key):
  args = [sys.executable, "main.py", f"--workdir={tmp_path}/w"]
  args += [override] if override.startswith("--config=") else [
      "--config=configs/supervised.py:dataset=digits", override]
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert key in proc.stderr
  assert not os.path.exists(tmp_path / "w" / "checkpoints")
