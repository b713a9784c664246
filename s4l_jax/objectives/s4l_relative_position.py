"""S4L-Relative-Position: the relative-position loss on the unlabeled stream + the class loss.

As S4L-Rotation with Doersch et al.'s pretext task (`objectives/relative_position.py`): the
unlabeled stream (the whole train split, labeled images included) takes the
`relative_position` view, the labeled stream the whole-image `train` view:
    L_pos = xent over the 8 neighbour positions (`objective_lib.relative_position_loss`)
    L_cls = xent_cls(labeled images)
    L     = L_cls + loss.position_weight * L_pos
The patches' pass discards its BN statistics: the moving averages come from the labeled whole
images, as evaluation sees them.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train, relative_position_loss

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 2},
                                   heads=("classes", "relative_position"))
LOSS_KEYS = {"position_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE)}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  labeled = batch["labeled"]
  pos_loss, pos_acc = relative_position_loss(model, params, batch_stats, batch["unlabeled"])
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  sup_loss = losses.softmax_xent(outputs["classes"], labeled["label"])
  loss = sup_loss + loss_config.position_weight * pos_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(outputs["classes"], labeled["label"]),
      "position_loss": pos_loss, "position_accuracy": pos_acc})
