"""Self-supervised colorization (Zhang, Isola & Efros 2016; Colorization + Linear / Fine-tune).

The unlabeled stream (the whole train split, view `train`) is converted to Lab; the network
sees L only and its dense head "colorization" (a 1x1 convolution on the trunk's last feature
map, `models.heads`) classifies each cell's mean ab over the Q quantised bins:
    L = mean over positions of w(q*) * soft-xent(soft_encode(ab), logits)
(`objective_lib.colorization_loss`: soft targets over the 5 nearest bins, sigma 5, class
rebalancing with lambda 0.5). The rebalancing prior is the bins' histogram of every training
position seen so far: the objective's state, checkpointed and resumed bit-identically (the
paper counts it over ImageNet first). The labeled batch's colour images (view `train`,
labels ignored) pass through the network in training mode with no loss, only so that BN's
moving averages describe what evaluation sees. The "classes" head gets no loss.
"""
from s4l_jax import objectives
from s4l_jax.objective_lib import (COLORIZATION_LOSS_KEYS, apply_train, check_colorization_head,  # pylint: disable=g-multiple-import
                                   colorization_loss, colorization_state)

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 1},
                                   heads=("classes", "colorization"), aux=("state",))
LOSS_KEYS = COLORIZATION_LOSS_KEYS


def check(config):
  check_colorization_head(config)


def init_state(config, rng):
  del config, rng
  return colorization_state()


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng
  loss, acc, counts = colorization_loss(model, params, batch_stats, batch["unlabeled"]["image"],
                                        aux["state"]["bin_counts"], loss_config)
  _, new_stats = apply_train(model, params, batch_stats, batch["labeled"]["image"])
  return objectives.LossOutput(loss, new_stats, {"color_loss": loss, "color_accuracy": acc},
                               {"bin_counts": counts})
