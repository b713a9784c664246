"""Every objective learns: a short run on digits (8 px, WRN-10-1) lowers its training loss and
ends with an accuracy above chance: test top-1 where the objective trains the class head, else
the accuracy of its own task (rotation, jigsaw tile, colour bin, contrastive positive, cluster),
averaged over the last quarter of the logged steps. Objectives that start from another network
(linear evaluation, distillation, ClusterFit) read a supervised digits export trained once.
"""
import pkgutil

import numpy as np
import pytest

from s4l_jax import config_lib, events, objectives, runner
from testing_utils import load_config, tiny

STEPS = 60
BATCH = 32
TEST_TOP1 = "top1"
# "Above chance": 1.5 x chance is over 3 standard deviations of a chance-level accuracy on the
# 360 test images (top-1, chance 0.1) or on a quarter of the logged steps' batches.
ABOVE_CHANCE = 1.5
EXPORT = "EXPORT"  # replaced by the supervised digits export's path

# objective -> (config, config arg after dataset=digits, stage or "", accuracy, chance).
# accuracy: TEST_TOP1 or a logged scalar; chance: its value for a network that learnt nothing.
CASES = {
    "supervised": ("supervised", "", "", TEST_TOP1, 0.1),
    "fixmatch": ("fixmatch", "", "", TEST_TOP1, 0.1),
    "mean_teacher": ("mean_teacher", "", "", TEST_TOP1, 0.1),
    "vat": ("vat_entmin", "", "", TEST_TOP1, 0.1),
    # Its class term (weight 0.3, beside rotation, VAT and EntMin) needs more than 60 steps:
    # training accuracy is still at chance there, so rotation accuracy is its check.
    "moam_step1": ("moam", "", "step1", "rot_accuracy", 1 / 4),
    "s4l_rotation": ("s4l_rotation", "", "", TEST_TOP1, 0.1),
    "s4l_exemplar": ("s4l_exemplar", "", "", TEST_TOP1, 0.1),
    "s4l_jigsaw": ("s4l_jigsaw", "permutations=4", "", TEST_TOP1, 0.1),
    "s4l_relative_position": ("s4l_relative_position", "", "", TEST_TOP1, 0.1),
    "s4l_colorization": ("s4l_colorization", "", "", TEST_TOP1, 0.1),
    "virtual_teacher": ("tf_kd", "teacher=virtual", "", TEST_TOP1, 0.1),
    "linear_eval": ("linear_eval", f"pretrained={EXPORT}", "", TEST_TOP1, 0.1),
    "distill": ("simclrv2", "", "distill", TEST_TOP1, 0.1),
    "rotation": ("rotation", "", "", "rot_accuracy", 1 / 4),
    "multitask": ("multitask", "tasks=rotation", "", "rot_accuracy", 1 / 4),
    "jigsaw": ("jigsaw", "permutations=4", "", "jigsaw_accuracy", 1 / 4),
    "relative_position": ("relative_position", "", "", "position_accuracy", 1 / 8),
    "colorization": ("colorization", "", "", "color_accuracy", None),
    # Its contrast accuracy stays at chance for 60 steps (a 400-step digits pretraining
    # takes it from 0.016 to 0.25): the contrastive loss falling is the check.
    "simclr": ("simclrv2", "", "pretrain", None, None),
    "clusterfit": ("clusterfit", f"pretrained={EXPORT}", "clusterfit", "cluster_accuracy", None),
    # Losses without an accuracy: the loss falling is the check.
    "exemplar": ("exemplar", "", "", None, None),
    "pirl": ("pirl", "", "", None, None),
}


# The 3x3-grid tasks at digits' own 16 px: at 8 px a jigsaw tile is 1 pixel.
IMAGE_SIZE = {"jigsaw": 16, "s4l_jigsaw": 16, "relative_position": 16,
              "s4l_relative_position": 16}


def test_every_objective_has_a_case():
  modules = [m.name for m in pkgutil.iter_modules(objectives.__path__)]
  assert sorted(CASES) == sorted(modules)


@pytest.fixture(name="supervised_export", scope="module")
def supervised_export_fixture(tmp_path_factory):
  """A supervised digits export (the tiny network, STEPS steps): teacher or trunk of the
  objectives that start from another network."""
  workdir = tmp_path_factory.mktemp("supervised")
  runner.run(short_run(load_config("supervised", "dataset=digits")), str(workdir))
  return str(workdir / "export")


def short_run(config, image_size: int = 8):
  config = tiny(config, steps=STEPS, batch=BATCH, image_size=image_size)
  config.checkpoint_every_steps = STEPS
  # BatchNorm's running statistics (what evaluation uses) would still be half their initial
  # (0, 1) after 60 steps at momentum 0.99: 0.9 averages over the last ~10 steps.
  config.model.bn_momentum = 0.9
  return config


def case_config(objective, export_dir):
  name, arg, stage, _, _ = CASES[objective]
  config = load_config(name, ",".join(filter(None, ("dataset=digits", arg))).replace(
      EXPORT, export_dir))
  if stage:
    config = config.stages[stage]
    for key in config_lib.EXPORT_PATH_KEYS:
      if config[key].startswith("@"):
        config[key] = export_dir
  return short_run(config, IMAGE_SIZE.get(objective, 8))


# The loss an objective is judged by, where its logged `loss` holds more than the objective:
# SimCLR's adds the linear probe on stop_gradient(features), whose cross-entropy rises from
# 4 to over 100 in the first ~100 steps (SimCLR's LARS gives the probe, the BN parameters and
# biases the raw lr 0.1 sqrt(B), no trust ratio) before it settles.
OBJECTIVE_LOSS = {"simclr": "contrastive_loss"}

# PIRL's NCE loss rises while the memory bank, random unit rows at step 0, fills with the
# network's features (the negatives become as similar to the anchor as the positive is):
# 7.25 -> 7.66 in 60 steps; over 200 steps it peaks at 8.1 and ends at 7.28, below its start.
# Strict: a crash is no expected failure, and a pass means this note is out of date.
NOT_YET_LEARNING = {"pirl"}


@pytest.mark.slow
@pytest.mark.parametrize("objective", [
    pytest.param(name, marks=pytest.mark.xfail(reason="its loss rises while its memory "
                                                      "bank fills", raises=AssertionError,
                                               strict=True))
    if name in NOT_YET_LEARNING else name for name in sorted(CASES)])
def test_objective_learns(objective, tmp_path, request):
  export_dir = request.getfixturevalue("supervised_export") if (
      EXPORT in CASES[objective][1] or CASES[objective][2] in ("distill",)) else ""
  config = case_config(objective, export_dir)
  assert config.objective == objective
  results = runner.run(config, str(tmp_path))
  scalars = events.read_scalars(str(tmp_path))
  loss = np.array([v for _, v in scalars[OBJECTIVE_LOSS.get(objective, "loss")]])
  quarter = max(1, len(loss) // 4)
  assert len(loss) == STEPS and np.all(np.isfinite(loss)), loss
  assert loss[-quarter:].mean() < loss[:quarter].mean(), loss
  _, _, _, accuracy, chance = CASES[objective]
  if accuracy == TEST_TOP1:
    assert results["top1"] > ABOVE_CHANCE * chance, results["top1"]
  elif accuracy:
    values = np.array([v for _, v in scalars[accuracy]])
    first, last = values[:quarter].mean(), values[-quarter:].mean()
    assert last > first, values
    if chance is not None:
      assert last > ABOVE_CHANCE * chance, values
