"""ClusterFit (Yan et al. 2020) in one command: `WORKDIR/features`, `WORKDIR/clusterfit`,
`WORKDIR/linear`.

Args (`--config=configs/clusterfit.py:dataset=digits`):
  dataset:    imagenet2012 (default) | cifar10 | digits | folder:PATH (the clustering reads
              each image's index: in-memory datasets only)
  labels:     10pct (default) | 1pct | <int> | <int>perclass | all (the linear stage's labels)
  steps:      0 = the presets' budgets; > 0: that many steps per stage
  pretrained: '' (default): the stage `features` trains the feature network first, the
              rotation pretext row (`configs/rotation.py`); else an export dir (any pretrained
              network: rotation, exemplar, SimCLR, a converted checkpoint), and no `features`
  clusters:   K, the k-means clusters (0 = the dataset's `DatasetFamily.clusters`: digits 50,
              cifar10 / folders 500, ImageNet 16,000, the top of the paper's 1,000 - 16,000)
  step:       all (default) | features | clusterfit | linear: that stage only (the stages
              it reads must have finished)

Stages: `clusterfit` embeds every train image with the feature network (`pre_logits`), k-means
them into K clusters (`s4l_jax/kmeans.py`, seeded; at its step 0) and trains a fresh network
of the same architecture from scratch to predict each image's cluster
(`s4l_jax/objectives/clusterfit.py`; the pretext rows' optimisation, `pretext_preset`);
`linear` is `configs/linear_eval.py` on it (for fine-tuning instead:
`configs/finetune.py:pretrained=WORKDIR/clusterfit/export`). Re-running resumes at the stage
and iteration where it stopped.
"""
import ml_collections

from s4l_jax import config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets

STAGES = ("features", "clusterfit", "linear")


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0, pretrained="",
                           clusters=0, step="all")
  if a.step not in ("all",) + STAGES:
    raise ValueError(f"step={a.step!r} must be all or one of {', '.join(STAGES)}")
  common_args = (f"dataset={a.dataset},labels={a.labels},steps={a.steps},evals={a.evals},"
                 f"regime={a.regime}")
  clusters = a.clusters or datasets.get(a.dataset).clusters

  fit = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                               labeled_batch=32)
  config_lib.set_objective(fit, "clusterfit")
  fit.frozen_teacher = a.pretrained or "@features"
  fit.input.unlabeled.batch_size = 256
  fit.model.heads.clusters = clusters
  fit.loss.num_clusters = clusters
  common.pretext_preset(fit, a.regime)
  common.set_steps(a.steps, fit)

  stages = dict(clusterfit=fit, linear=config_lib.load_config(
      "linear_eval", f"pretrained=@clusterfit,{common_args}"))
  if not a.pretrained:
    stages["features"] = config_lib.load_config("rotation", common_args)
  c = ml_collections.ConfigDict()
  c.method = "clusterfit"
  c.run_stages = a.step
  c.stages = ml_collections.ConfigDict(stages)
  c.allow_config_change = False  # True: resume the stages under a changed config (warns)
  return c
