"""Linear evaluation of a frozen pretrained trunk (S4L "Rotation / Exemplar + Linear").

The trunk runs in inference mode (`train=False`: running BN statistics, which are returned
unchanged); the config's "classes" head reads pre_logits (N, D) through stop_gradient and is
trained with xent on the labeled images. Pair with `config.trainable = "heads"` so that
weight decay does not shrink the frozen trunk either.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy

REQUIRES = objectives.Requirements(streams={"labeled": 1}, heads=("classes",))

LOSS_KEYS = {}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, loss_config, aux
  labeled = batch["labeled"]
  logits = model.apply({"params": params, "batch_stats": batch_stats}, labeled["image"],
                       train=False)["classes"]
  loss = losses.softmax_xent(logits, labeled["label"])
  return objectives.LossOutput(loss, batch_stats, {
      "sup_loss": loss, "sup_accuracy": accuracy(logits, labeled["label"])})
