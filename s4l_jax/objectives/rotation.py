"""Self-supervised rotation pretraining (S4L's "Rotation + Linear / Fine-tune" baselines).

All images of both streams (the unlabeled stream is the whole train split; the labeled batch
is used as further unlabeled images, its labels are ignored) take the `rotate4` view;
`L = xent_rot` averaged over every rotated image. The "classes" head gets no loss: it only
keeps the export contract (`predict` -> class logits) and is replaced or re-trained by the
linear evaluation / fine-tuning run.
"""
from s4l_jax import losses
from s4l_jax.objectives import s4l_rotation


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  del rng, config
  streams = [batch[k] for k in ("unlabeled", "labeled") if k in batch]
  images, rotations, _ = s4l_rotation.rotation_inputs(streams)
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, images,
                             train=True, mutable=["batch_stats"])
  logits = outputs["rotations"]
  loss = losses.softmax_xent(logits, rotations)
  return loss, (new["batch_stats"], {
      "rot_loss": loss, "rot_accuracy": s4l_rotation.accuracy(logits, rotations)})
