"""Self-supervised relative-position pretraining (Doersch et al. 2015; + Linear / Fine-tune).

The unlabeled stream (the whole train split) takes the `relative_position` view: per image the
centre tile of a jittered 3x3 grid and one of its 8 neighbours, drawn uniformly (its label),
each with colour dropping. `objective_lib.relative_position_loss`: a shared trunk over both
patches and a linear 8-way head "relative_position" on their concatenated features (late
fusion); `L = xent over the 8 positions`. The labeled batch's whole images (view `train`,
labels ignored) pass through the network in training mode with no loss, only so that BN's
moving averages (which linear evaluation freezes) describe whole images, not patches. The
"classes" head gets no loss: it keeps the export contract and is re-trained downstream.
"""
from s4l_jax import objectives
from s4l_jax.objective_lib import apply_train, relative_position_loss

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 2},
                                   heads=("classes", "relative_position"))
LOSS_KEYS = {}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, loss_config, aux
  loss, acc = relative_position_loss(model, params, batch_stats, batch["unlabeled"])
  _, new_stats = apply_train(model, params, batch_stats, batch["labeled"]["image"])
  return objectives.LossOutput(loss, new_stats, {"position_loss": loss, "position_accuracy": acc})
