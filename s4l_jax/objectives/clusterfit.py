"""ClusterFit (Yan et al. 2020): a fresh network learns to predict the clusters of a pretrained
network's features.

At step 0 (`init_state`) the frozen network `config.frozen_teacher` (an export: rotation,
exemplar, SimCLR, a converted checkpoint) embeds every train image at its endpoint
`loss.endpoint` (the penultimate layer, `pre_logits`, as the paper), k-means
(`s4l_jax.kmeans`, seeded by `config.seed`) groups them into `loss.num_clusters` clusters, and
the assignments (N,) become the objective's state (checkpointed with the run, so a resume
keeps them; labels are never read). Then, on the unlabeled stream (the whole train split,
view `train`, carrying each image's index):
    L = xent(head "clusters", assignments[index])
with BN's statistics from these whole images. The "classes" head gets no loss (linear /
fine-tune evaluation re-trains it). The frozen network is loaded but never run in the step.
"""
import numpy as np
from absl import logging

from s4l_jax import embed, kmeans, losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train, check_index_pipeline

REQUIRES = objectives.Requirements(streams={"unlabeled": 1}, heads=("classes", "clusters"),
                                   aux=("state",))
LOSS_KEYS = {"num_clusters": objectives.LossKey(objectives.REQUIRED, objectives.Range(2)),
             "kmeans_iterations": objectives.LossKey(100, objectives.AT_LEAST_ONE),
             "endpoint": objectives.LossKey("pre_logits")}  # the frozen network's, clustered


def check(config):
  """The index pipeline, the frozen network and head "clusters" K wide."""
  check_index_pipeline(config)
  if not config.frozen_teacher:
    raise ValueError("objective clusterfit clusters the features of frozen_teacher: set "
                     "frozen_teacher=DIR/export (configs/clusterfit.py: pretrained=)")
  if config.model.heads.get("clusters") != config.loss.num_clusters:
    raise ValueError(f"model.heads.clusters={config.model.heads.get('clusters')!r} must be "
                     f"loss.num_clusters={config.loss.num_clusters}")


def cluster_train_split(config):
  """Assignments (N,) int32 of the train split's features under `config.frozen_teacher`."""
  lc = config.loss
  arrays = embed.embed_export(config.frozen_teacher, config.dataset, "train", lc.endpoint,
                              config.data_dir)
  _, assignments = kmeans.kmeans(arrays["features"], lc.num_clusters, config.seed,
                                 lc.kmeans_iterations)
  assignments = np.asarray(assignments)
  sizes = np.bincount(assignments, minlength=lc.num_clusters)
  purity = sum(np.bincount(arrays["labels"][assignments == c]).max(initial=0)
               for c in range(lc.num_clusters)) / len(assignments)
  logging.info("ClusterFit: %d train images of %s in %d clusters (sizes %d..%d, %d empty); "
               "purity against the true labels %.3f (logged only)", len(assignments),
               config.frozen_teacher, lc.num_clusters, sizes.min(), sizes.max(),
               int(np.sum(sizes == 0)), purity)
  return assignments


def init_state(config, rng):
  """{"assignments": (N,) int32}, the cluster of every train image (`cluster_train_split`)."""
  del rng
  return {"assignments": cluster_train_split(config)}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, loss_config
  stream = batch["unlabeled"]
  targets = aux["state"]["assignments"][stream["index"]]
  outputs, new_stats = apply_train(model, params, batch_stats, stream["image"])
  loss = losses.softmax_xent(outputs["clusters"], targets)
  metrics = {"cluster_loss": loss, "cluster_accuracy": accuracy(outputs["clusters"], targets)}
  return objectives.LossOutput(loss, new_stats, metrics, aux["state"])
