"""Supervised baseline (methods.md 2.5a): cross-entropy on the labeled images only."""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1}, heads=("classes",))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, loss_config, aux
  labeled = batch["labeled"]
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  logits = outputs["classes"]
  loss = losses.softmax_xent(logits, labeled["label"])
  return loss, (new_stats, {"sup_loss": loss, "sup_accuracy": accuracy(logits, labeled["label"])})
