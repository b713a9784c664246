"""S4L-Colorization: the colorization loss on the unlabeled stream + the class loss on labeled
images.

As S4L-Rotation with the colorization pretext task (`objectives/colorization.py`): the
unlabeled stream (the whole train split, labeled images included, view `train`) is coloured
from its L channel by the dense head "colorization", the labeled stream is classified:
    L_color = rebalanced soft cross-entropy over the ab bins (`objective_lib.colorization_loss`)
    L_cls   = xent_cls(labeled images)
    L       = L_cls + loss.color_weight * L_color
The grey pass discards its BN statistics: the moving averages come from the labeled colour
images, as evaluation sees them. The rebalancing prior (bins counted so far) is the state.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import (COLORIZATION_LOSS_KEYS, accuracy, apply_train,  # pylint: disable=g-multiple-import
                                   check_colorization_head, colorization_loss, colorization_state)

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 1},
                                   heads=("classes", "colorization"), aux=("state",))
LOSS_KEYS = dict(COLORIZATION_LOSS_KEYS,
                 color_weight=objectives.LossKey(1.0, objectives.NON_NEGATIVE))


def check(config):
  check_colorization_head(config)


def init_state(config, rng):
  del config, rng
  return colorization_state()


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng
  labeled = batch["labeled"]
  color_loss, color_acc, counts = colorization_loss(
      model, params, batch_stats, batch["unlabeled"]["image"], aux["state"]["bin_counts"],
      loss_config)
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  sup_loss = losses.softmax_xent(outputs["classes"], labeled["label"])
  loss = sup_loss + loss_config.color_weight * color_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(outputs["classes"], labeled["label"]),
      "color_loss": color_loss, "color_accuracy": color_acc}, {"bin_counts": counts})
