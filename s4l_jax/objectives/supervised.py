"""Supervised baseline (methods.md 2.5a): cross-entropy on the labeled images only."""
from s4l_jax import losses


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  del rng, config
  labeled = batch["labeled"]
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, labeled["image"],
                             train=True, mutable=["batch_stats"])
  logits = outputs["classes"]
  loss = losses.softmax_xent(logits, labeled["label"])
  accuracy = (logits.argmax(-1) == labeled["label"]).mean()
  return loss, (new["batch_stats"], {"sup_loss": loss, "sup_accuracy": accuracy})
