"""S4L-Jigsaw: the jigsaw loss on the unlabeled stream + the class loss on labeled images.

As S4L-Rotation with the jigsaw pretext task (`objectives/jigsaw.py`): the unlabeled stream
(the whole train split, labeled images included) takes the `jigsaw` view, the labeled stream
the whole-image `train` view:
    L_jigsaw = xent over the P permutations of `loss.permutations` (`objective_lib.jigsaw_loss`)
    L_cls    = xent_cls(labeled images)
    L        = L_cls + loss.jigsaw_weight * L_jigsaw
The tiles' pass discards its BN statistics: the moving averages come from the labeled whole
images, as evaluation sees them.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train, check_jigsaw_head, jigsaw_loss

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 9},
                                   heads=("classes", "jigsaw"))
LOSS_KEYS = {"permutations": objectives.LossKey(objectives.REQUIRED),  # as jigsaw's
             "jigsaw_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE)}


def check(config):
  check_jigsaw_head(config)


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del aux
  labeled = batch["labeled"]
  jig_loss, jig_acc = jigsaw_loss(model, params, batch_stats, batch["unlabeled"]["image"],
                                  loss_config.permutations, rng)
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  sup_loss = losses.softmax_xent(outputs["classes"], labeled["label"])
  loss = sup_loss + loss_config.jigsaw_weight * jig_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(outputs["classes"], labeled["label"]),
      "jigsaw_loss": jig_loss, "jigsaw_accuracy": jig_acc})
