"""Every config loads for each supported arg; typos fail at once, naming the key."""
import ast
import math
import os
import subprocess
import sys

import pytest

from s4l_jax import budget, config_lib, evaluators
from s4l_jax.configs import common
from s4l_jax.data import datasets, views
from testing_utils import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [config_lib.config_path(name) for name in config_lib.config_names()]
DATASETS = ["imagenet2012", "cifar10", "digits", "folder:/data/cifar10"]
LABELS = ["10pct", "1pct", "4000", "400perclass"]
REQUIRED_ARGS = {"linear_eval": "pretrained=/runs/rotation/export,",
                 "finetune": "pretrained=/runs/rotation/export,",
                 "pseudo_label": "teacher=/runs/supervised/export,"}


def trainer_configs(c):
  """The single-run configs inside `c` (itself, or each stage of a pipeline)."""
  return list(c.stages.values()) if "stages" in c else [c]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("labels", LABELS)
def test_config_loads(path, dataset, labels):
  name = os.path.basename(path)[:-3]
  for c in trainer_configs(config_lib.load_config(path, REQUIRED_ARGS.get(name, "") +
                                f"dataset={dataset},labels={labels}")):
    assert c.dataset == dataset and c.labels == labels
    assert c.input.labeled.batch_size > 0 and c.model.name
    assert budget.total_steps(c, num_labeled=10_000, num_unlabeled=50_000) > 0


def test_parse_arg_types_and_errors():
  a = config_lib.parse_arg("steps=5,labels=1pct,fast", steps=0, labels="10pct", fast=False,
                           lr=0.1)
  assert (a.steps, a.labels, a.fast, a.lr) == (5, "1pct", True, 0.1)
  with pytest.raises(ValueError, match="labls"):
    config_lib.parse_arg("labls=1pct", labels="10pct")
  with pytest.raises(ValueError, match="steps"):
    config_lib.parse_arg("steps=many", steps=0)


def test_parse_arg_comma_in_a_value_is_escaped():
  a = config_lib.parse_arg(r"dataset=folder:/data/a\,b\,c,steps=2", dataset="", steps=0)
  assert (a.dataset, a.steps) == ("folder:/data/a,b,c", 2)
  # Unescaped, the rest of the path is read as an arg: the error says how to escape it.
  with pytest.raises(ValueError, match=r"^Unknown config arg 'b'; valid args: dataset, evals, "
                     r"regime, steps \(a comma inside a value, e.g. in a path, is written \\,"):
    config_lib.parse_arg("dataset=folder:/data/a,b,steps=2", dataset="", steps=0)
  with pytest.raises(ValueError, match=r"^Unknown config arg 'stpes'; valid args: dataset, "
                     r"evals, regime, steps$"):  # a misspelt key: no hint
    config_lib.parse_arg("stpes=2", dataset="", steps=0)


def test_folder_with_a_comma_in_its_path_loads(tmp_path):
  root = write_image_folder(tmp_path / "a,b")
  c = config_lib.load_config("supervised", f"dataset=folder:{root.replace(',', chr(92) + ',')}")
  assert c.dataset == f"folder:{root}" and config_lib.dataset_family(c.dataset) == "folder"


@pytest.mark.parametrize("name, arg, match", [
    ("moam", "step=4", r"^step=4 must be 0 \(all three steps\) or 1..3$"),
    ("simclrv2", "step=4", r"^step=4 must be 0 \(all stages\) or 1..3$"),
])
def test_pipeline_step_out_of_range_names_the_arg(name, arg, match):
  """Not the internal key `run_stages` the step selects."""
  with pytest.raises(ValueError, match=match):
    config_lib.load_config(name, arg)


def test_noisy_student_pseudo_ratio_separates_the_students_batches():
  """pseudo_ratio=3: each student adds a pseudo stream of 3x its labeled batch with the same
  noisy view; the teacher and the default (one shared stream) declare none."""
  c = config_lib.load_config("noisy_student", "dataset=digits,pseudo_ratio=3")
  assert "pseudo" not in c.stages.teacher.input
  for stage in ("student1", "student2", "student3"):
    inp = c.stages[stage].input
    assert (inp.pseudo.source, inp.pseudo.batch_size, inp.pseudo.view) == (
        "pseudo", 3 * inp.labeled.batch_size, inp.labeled.view)
  assert "pseudo" not in config_lib.load_config("noisy_student", "dataset=digits").stages[
      "student1"].input
  with pytest.raises(ValueError, match=r"^Config arg pseudo_ratio=2 needs regime=small"):
    config_lib.load_config("noisy_student", "pseudo_ratio=2")
  with pytest.raises(ValueError, match=r"^Config arg pseudo_ratio=-1 must be >= 0$"):
    config_lib.load_config("noisy_student", "dataset=digits,pseudo_ratio=-1")


def test_supervised_imagenet_rows_match_paper():
  """`s4l:config/supervised_imagenet_*.sh`: 10% lr 0.1 wd 1e-3 decays 140/160/180 end 200;
  1% lr 0.01 wd 1e-2 ..."""
  path = os.path.join(ROOT, "configs", "supervised.py")
  c10, c1 = (config_lib.load_config(path, f"labels={labels}") for labels in ("10pct", "1pct"))
  assert (c10.lr.base, c10.optimizer.weight_decay, tuple(c10.lr.decay_epochs),
          c10.total_epochs, c10.input.labeled.batch_size) == (0.1, 1e-3, (140, 160, 180), 200,
                                                               256)
  assert (c1.lr.base, c1.optimizer.weight_decay, tuple(c1.lr.decay_epochs),
          c1.total_epochs) == (0.01, 1e-2, (700, 800, 900), 1000)
  # 128,000 labeled images at batch 256: 500 steps/epoch -> 100k steps; 1%: 13,000 -> 50k.
  assert budget.total_steps(c10, 128_000, 1_281_167) == 100_000
  assert budget.total_steps(c1, 13_000, 1_281_167) == 50_000
  assert c10.model.name == "resnet50v2" and c10.model.filters_factor == 4


def test_load_config_by_name_or_path():
  by_name = config_lib.load_config("vat_entmin", "dataset=digits")
  by_path = config_lib.load_config(os.path.join(ROOT, "configs", "vat_entmin.py"), "dataset=digits")
  assert by_name == by_path and by_name.loss.entmin_weight == 1.0
  assert config_lib.load_config("vat", "dataset=digits").loss.entmin_weight == 0.0
  with pytest.raises(ValueError, match=r"^No config file 'vta'; configs: clusterfit, "
                                       r"colorization, exemplar, finetune"):
    config_lib.load_config("vta")


def test_configs_import_only_the_package():
  """Configs share code through the package (config_lib, configs/common.py), never by loading
  another config file."""
  for path in CONFIGS:
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imported} <= {"s4l_jax", "ml_collections"}, path


@pytest.mark.parametrize("key, value, expected", [
    # 1,000 labeled at batch 64 (15 steps per S4L epoch, floored), 50,000 unlabeled at 128.
    ("total_steps", 123, 123),
    ("total_epochs", 2.5, math.ceil(2.5 * (1000 // 64))),
    ("total_unlabeled_epochs", 1.5, math.ceil(1.5 * 50_000 / 128)),
    ("total_examples", 1000, math.ceil(1000 / 64)),
])
def test_duration_units(key, value, expected):
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=64)
  c.input.unlabeled.batch_size = 128
  budget.set_duration(c, **{key: value})
  assert [k for k in budget.DURATION_KEYS if c[k]] == [key]
  assert budget.total_steps(c, num_labeled=1000, num_unlabeled=50_000) == expected


def test_total_steps_overrides_otherwise_exactly_one_duration_key():
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=64)
  c.total_steps = 10  # total_epochs=200 is still set: --config.total_steps=10 overrides it
  assert budget.total_steps(c, 1000, 1000) == 10
  c.total_steps, c.total_examples = 0, 640  # two epoch-like units: ambiguous
  with pytest.raises(ValueError, match=r"; got total_epochs=200.0, total_examples=640$"):
    budget.total_steps(c, 1000, 1000)
  c.total_epochs, c.total_examples = 0.0, 0
  with pytest.raises(ValueError, match=r"; got all 0$"):
    budget.total_steps(c, 1000, 1000)
  with pytest.raises(ValueError, match=r"Unknown duration key 'epochs'; valid: total_steps, "):
    budget.set_duration(c, epochs=3)
  budget.set_duration(c, total_unlabeled_epochs=1.0)
  with pytest.raises(ValueError, match=r"unlabeled stream need input.unlabeled.batch_size > 0"):
    budget.total_steps(c, 1000, 1000)


@pytest.mark.parametrize("name, unlabeled_batch", [("rotation", 256), ("exemplar", 512)])
@pytest.mark.parametrize("labels, num_labeled", [("10pct", 128_000), ("1pct", 13_000)])
def test_pretext_schedule_counts_passes_over_imagenet(name, unlabeled_batch, labels,
                                                      num_labeled):
  """35 passes over ImageNet's train split at B_u, warm-up 5, decays at 15 and 25 passes: the
  same steps as converting passes to labeled epochs (cae8997's imagenet_pass_schedule)."""
  c = config_lib.load_config(name, f"labels={labels}")
  num_train = 1_281_167
  steps_per_pass = num_train / unlabeled_batch
  assert c.input.unlabeled.batch_size == unlabeled_batch
  assert budget.total_steps(c, num_labeled, num_train) == math.ceil(35 * steps_per_pass)
  spe = budget.schedule_steps_per_epoch(c, num_labeled, num_train)
  labeled_spe = budget.steps_per_epoch(num_labeled, c.input.labeled.batch_size)
  epochs_per_pass = steps_per_pass / labeled_spe  # the old conversion to labeled epochs
  for passes, epochs in ((c.lr.warmup_epochs, 5), *zip(c.lr.decay_epochs, (15, 25))):
    assert round(passes * spe) == round(epochs * epochs_per_pass * labeled_spe)


def test_supervised_1pct_imagenet_adds_hsv_noise_like_the_released_config():
  """supervised_imagenet_1p.sh: inception crop, flip, hsvnoise; the 10% row and digits keep
  the plain train view."""
  path = os.path.join(ROOT, "configs", "supervised.py")
  assert config_lib.load_config(path, "labels=1pct").input.labeled.view == "inception_crop|flip|hsv_noise"
  assert config_lib.load_config(path, "labels=10pct").input.labeled.view == "train"
  assert config_lib.load_config(path, "labels=1pct,dataset=digits").input.labeled.view == "train"
  spec = views.resolve("inception_crop|flip|hsv_noise", "inception")
  assert spec.crop == "inception_crop" and spec.ops == ("flip", "hsv_noise")


@pytest.mark.slow
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


# fidelity=paper: BN group = one core's images of the S4L README's TPU (`s4l:README.md`).
PER_CORE = {  # row: (cores, images per step, bn_group_size, triplet_groups)
    "supervised": (8, 256, 32, None), "pseudo_label": (8, 256, 32, None),
    "vat": (32, 256 + 256, 16, None), "vat_entmin": (32, 256 + 256, 16, None),
    "s4l_rotation": (32, (256 + 256) * 4, 64, None),
    "s4l_exemplar": (32, (512 + 512) * 8, 256, 32)}


@pytest.mark.parametrize("name", sorted(PER_CORE))
@pytest.mark.parametrize("labels", ["10pct", "1pct"])
def test_fidelity_paper_switches_the_per_core_settings(name, labels):
  cores, images, group, triplet_groups = PER_CORE[name]
  args = REQUIRED_ARGS.get(name, "") + f"labels={labels}"
  default = config_lib.load_config(name, args)
  paper = config_lib.load_config(name, args + ",fidelity=paper")
  rows = sum(paper.input[s].batch_size * views.copies(paper.input[s].view)
             for s in ("labeled", "unlabeled"))
  assert rows == images and paper.model.bn_group_size * cores == rows == group * cores
  assert default.model.bn_group_size == 0  # global BN
  assert paper.loss.get("triplet_groups") == triplet_groups
  assert default.loss.get("triplet_groups") == (1 if triplet_groups else None)
  paper.model.bn_group_size = 0
  if triplet_groups:
    paper.loss.triplet_groups = 1
  assert paper.to_dict() == default.to_dict()  # nothing else moves
  with pytest.raises(ValueError, match="imagenet2012 only"):
    config_lib.load_config(name, REQUIRED_ARGS.get(name, "") + "dataset=digits,fidelity=paper")
  with pytest.raises(ValueError, match="fidelity='tpu' must be one of default, paper"):
    config_lib.load_config(name, args + ",fidelity=tpu")


@pytest.mark.parametrize("name,lr,wd", [("vat", 0.03, 1e-3), ("vat_entmin", 0.03, 1e-3),
                                        ("s4l_rotation", 0.03, 1e-3),
                                        ("s4l_exemplar", 0.1, 1e-3)])
def test_unreleased_one_percent_rows(name, lr, wd):
  """labels=1pct: the supervised-1% schedule with the 10% lr / wd, or (hparams_1pct=supervised)
  lr / 10 and wd x 10 as the released supervised row moved them."""
  c10 = config_lib.load_config(name, "labels=10pct")
  c1 = config_lib.load_config(name, "labels=1pct")
  moved = config_lib.load_config(name, "labels=1pct,hparams_1pct=supervised")
  assert (c10.lr.base, c10.optimizer.weight_decay) == (c1.lr.base, c1.optimizer.weight_decay)
  assert (c1.lr.base, c1.optimizer.weight_decay) == (lr, wd)
  assert (moved.lr.base, moved.optimizer.weight_decay) == pytest.approx((lr / 10, wd * 10))
  for c in (c1, moved):
    assert (tuple(c.lr.decay_epochs), c.total_epochs) == ((700, 800, 900), 1000)
  # 13,000 labeled images (13 per class) at batch 256: 50 steps per epoch.
  assert budget.total_steps(c1, 13_000, 1_281_167) == 50_000 * 256 // c1.input.labeled.batch_size
  with pytest.raises(ValueError, match="hparams_1pct=supervised needs labels=1pct"):
    config_lib.load_config(name, "labels=10pct,hparams_1pct=supervised")
  with pytest.raises(ValueError, match="hparams_1pct='x' must be one of 10pct, supervised"):
    config_lib.load_config(name, "labels=1pct,hparams_1pct=x")


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_takes_evals_full(path):
  """`evals=full` (config_lib.COMMON_ARGS) adds every evaluator kind to every (stage) config;
  the default adds none; another value fails in one line."""
  name = os.path.basename(path)[:-3]
  arg = REQUIRED_ARGS.get(name, "") + "dataset=digits"
  for c in trainer_configs(config_lib.load_config(path, arg + ",evals=full")):
    kinds = {spec.get("kind") for spec in c.evals.values()}
    assert kinds == {None, *evaluators.FULL}, name
  for c in trainer_configs(config_lib.load_config(path, arg)):
    assert all("kind" not in spec for spec in c.evals.values()), name
  with pytest.raises(ValueError, match=r"^evals='most' must be one of default, full$"):
    config_lib.load_config(path, arg + ",evals=most")


@pytest.fixture(name="wide_export", scope="module")
def wide_export_fixture(tmp_path_factory):
  """(export dir, variables) of a WRN-10-2 on 10 classes (a MOAM digits export's shape),
  wider than the WRN-10-1 the digits presets build."""
  import jax  # pylint: disable=g-import-not-at-top
  from s4l_jax import export  # pylint: disable=g-import-not-at-top
  from s4l_jax import initialization as model_init  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  model_config = dict(name="wrn", depth=10, width=2, bn_epsilon=1e-4)
  variables = model_init.init_variables(build_model(model_config, 10), (8, 8, 3),
                                        jax.random.PRNGKey(0))
  export_dir = str(tmp_path_factory.mktemp("moam") / "export")
  export.write_export(export_dir, model_config, variables, image_size=8, channels=3,
                      class_names=[str(i) for i in range(10)], meta=dict(method="moam"))
  return export_dir, variables


@pytest.mark.parametrize("name", ["finetune", "linear_eval"])
@pytest.mark.slow
def test_pretrained_export_gives_the_trunk_unless_overridden(wide_export, name):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from s4l_jax import initialization as model_init  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  export_dir, variables = wide_export
  c = config_lib.load_config(name, f"pretrained={export_dir},dataset=digits")
  assert (c.model.name, c.model.depth, c.model.width, c.model.bn_epsilon) == ("wrn", 10, 2, 1e-4)
  start = model_init.init_variables(build_model(c.model, 10), (8, 8, 3), jax.random.PRNGKey(1),
                                    init_from=export_dir, init_take=c.init_take)
  jax.tree.map(np.testing.assert_array_equal, start["params"]["trunk"],
               variables["params"]["trunk"])
  c.model.width = 1  # --config.model.width=1 applies after get_config: the export no longer fits
  with pytest.raises(ValueError, match=r"init_from .*: .* has shape .* in the export but"):
    model_init.init_variables(build_model(c.model, 10), (8, 8, 3), jax.random.PRNGKey(1),
                              init_from=export_dir, init_take=c.init_take)


@pytest.mark.parametrize("dataset, regime", [("imagenet2012", "paper"), ("cifar10", "small"),
                                             ("digits", "small"), ("folder:/data/c", "small")])
def test_regime_defaults_to_paper_on_the_papers_datasets(dataset, regime):
  assert config_lib.parse_arg(f"dataset={dataset}", dataset="").regime == regime
  assert config_lib.parse_arg(f"dataset={dataset}", dataset="",
                              paper_datasets=("cifar10",)).regime == (
                                  "paper" if dataset == "cifar10" else "small")
  default = config_lib.load_config("supervised", f"dataset={dataset}")
  assert config_lib.load_config("supervised", f"dataset={dataset},regime={regime}") == default


def test_regime_small_on_imagenet_and_paper_on_digits():
  """The recipe follows the arg, the input and model follow the dataset."""
  small = config_lib.load_config("supervised", "regime=small")
  size = datasets.get("imagenet2012").small
  assert (small.input.labeled.batch_size, small.total_steps, small.lr.base,
          small.lr.schedule, small.input.image_size, small.model.name) == (
              size.batch, size.steps, size.lr, "cosine", 224, "resnet50v2")
  paper = config_lib.load_config("supervised", "dataset=digits,regime=paper,labels=1pct")
  assert (paper.input.labeled.batch_size, paper.total_epochs, paper.total_steps,
          paper.lr.base, paper.lr.schedule, paper.input.labeled.view, paper.input.image_size) \
      == (256, 1000.0, 0, 0.01, "step", "inception_crop|flip|hsv_noise", 16)


def test_regime_small_takes_the_registrys_sizes():
  for name in ("cifar10", "digits"):
    size = datasets.FAMILIES[name].small
    c = config_lib.load_config("vat", f"dataset={name}")
    assert (c.input.labeled.batch_size, c.input.unlabeled.batch_size, c.total_steps, c.lr.base,
            c.log_every_steps, c.checkpoint_every_steps) == (
                size.batch, size.batch, size.steps, size.lr, size.log_every_steps,
                size.checkpoint_every_steps)


def test_bad_regime_fails_in_one_line():
  with pytest.raises(ValueError, match=r"^regime='tiny' must be one of paper, small$"):
    config_lib.load_config("supervised", "regime=tiny")


def test_the_recipes_module_is_no_config():
  assert "common" not in config_lib.config_names()
  with pytest.raises(ValueError, match=r"^'common' is no config; configs: clusterfit, "):
    config_lib.load_config("common")
  with pytest.raises(ValueError, match=r"common.py has no get_config\(arg\): not a config"):
    config_lib.load_config(os.path.join(ROOT, "configs", "common.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_configs_branch_on_the_regime_not_the_dataset(path):
  """No config compares a dataset name (its facts are `DatasetFamily` fields), and at most
  one `if` tests the regime."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  families = set(datasets.FAMILIES)
  compared = {node.value for cmp in ast.walk(tree) if isinstance(cmp, ast.Compare)
              for node in ast.walk(cmp) if isinstance(node, ast.Constant)}
  name = os.path.basename(path)[:-3]
  assert not compared & families, name
  regime_ifs = [node for node in ast.walk(tree) if isinstance(node, ast.If)
                and "regime" in ast.unparse(node.test)]
  assert len(regime_ifs) <= 1, name


def test_set_steps_overrides_every_config_given():
  a, b = (config_lib.base_config(dataset="digits", labels="all", labeled_batch=8)
          for _ in range(2))
  common.set_steps(0, a, b)
  assert (a.total_steps, a.total_epochs) == (0, 200.0)
  common.set_steps(7, a, b)
  assert [(c.total_steps, c.total_epochs) for c in (a, b)] == [(7, 0.0), (7, 0.0)]
