"""Multi-task pretext learning (Doersch & Zisserman 2017), with the class loss: S4L-Multi.

One shared trunk, one head per task; each step sums the tasks' losses with their weights:
    L = loss.class_weight * xent_cls(labeled) + sum_task loss.<task>_weight * L_task
over the tasks with a weight > 0 (`TASKS`: rotation, exemplar, jigsaw, relative position).
The unlabeled stream (the whole train split) takes one view, `train`, or `exemplar8` when
exemplar is on (its 8 crops feed the triplet, crop 0 the other tasks); each task's input is
made from those crops by its view ops (`views.make_ops_fn`: rotate4, jigsaw_tiles,
patch_pair|color_drop), each task's pass discards its BN statistics, and BN's moving averages
come from a training-mode pass of the labeled whole images (with `class_weight = 0` their
labels are ignored).
"""
import jax

from s4l_jax import losses, objectives
from s4l_jax.data import views
from s4l_jax.objective_lib import (accuracy, apply_train, check_jigsaw_head,  # pylint: disable=g-multiple-import
                                   exemplar_embeddings, exemplar_triplet, flatten_views,
                                   jigsaw_loss, relative_position_loss)

# loss key of the task's weight -> the head it reads
TASKS = {"rotation_weight": "rotations", "triplet_weight": "embeddings",
         "jigsaw_weight": "jigsaw", "position_weight": "relative_position"}
# The weights (0: the task is off); the jigsaw task's (P, 9) table when it is on.
LOSS_KEYS = {"class_weight": objectives.LossKey(0.0, objectives.NON_NEGATIVE),
             **{key: objectives.LossKey(0.0, objectives.NON_NEGATIVE) for key in TASKS},
             "permutations": objectives.LossKey(objectives.OPTIONAL)}


def active_tasks(loss_config) -> list[str]:
  """The `TASKS` weight keys > 0 in `loss_config`."""
  return [key for key in TASKS if loss_config[key] > 0]


def check(config):
  if "jigsaw" in objectives.requirements(objectives.get(config.objective), config.loss).heads:
    check_jigsaw_head(config)


def REQUIRES(loss_config):  # pylint: disable=invalid-name
  tasks = active_tasks(loss_config)
  return objectives.Requirements(
      streams={"labeled": 1, "unlabeled": 8 if "triplet_weight" in tasks else 1},
      heads=("classes",) + tuple(TASKS[key] for key in tasks))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del aux
  tasks, unlabeled = active_tasks(loss_config), batch["unlabeled"]
  crops = unlabeled["image"][:, 0] if unlabeled["image"].ndim == 5 else unlabeled["image"]
  k_jig_view, k_jig, k_pos = jax.random.split(rng, 3)
  terms, metrics = {}, {}
  if "rotation_weight" in tasks:
    view = views.make_ops_fn("rotate4")(None, crops)
    outputs, _ = apply_train(model, params, batch_stats, flatten_views(view["image"]))
    labels = view["rotation"].reshape(-1)
    terms["rotation_weight"] = losses.softmax_xent(outputs["rotations"], labels)
    metrics["rot_accuracy"] = accuracy(outputs["rotations"], labels)
  if "triplet_weight" in tasks:
    _, _, emb = exemplar_embeddings(model, params, batch_stats, [unlabeled])
    terms["triplet_weight"] = exemplar_triplet(emb, crops.shape[0])
  if "jigsaw_weight" in tasks:
    tiles = views.make_ops_fn("jigsaw_tiles")(k_jig_view, crops)["image"]
    terms["jigsaw_weight"], metrics["jigsaw_accuracy"] = jigsaw_loss(
        model, params, batch_stats, tiles, loss_config.permutations, k_jig)
  if "position_weight" in tasks:
    pairs = views.make_ops_fn("patch_pair|color_drop")(k_pos, crops)
    terms["position_weight"], metrics["position_accuracy"] = relative_position_loss(
        model, params, batch_stats, pairs)
  labeled = batch["labeled"]
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  sup_loss = losses.softmax_xent(outputs["classes"], labeled["label"])
  loss = loss_config.class_weight * sup_loss + sum(loss_config[k] * v for k, v in terms.items())
  metrics.update({f"{k.removesuffix('_weight')}_loss": v for k, v in terms.items()})
  metrics.update(sup_loss=sup_loss, sup_accuracy=accuracy(outputs["classes"], labeled["label"]))
  return objectives.LossOutput(loss, new_stats, metrics)
