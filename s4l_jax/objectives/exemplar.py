"""Self-supervised exemplar pretraining (S4L's "Exemplar + Linear / Fine-tune" baselines).

All images of both streams (the labeled batch is used as further unlabeled images, its
labels are ignored) take the `exemplar8` view; `L` = the S4L batch-hard soft-margin triplet
(`s4l_exemplar.triplet_loss`, not the revisit repo's semi-hard margin-0.5 loss) over all
images together, identity = image. The "classes" head gets no loss: it only keeps the export
contract (`predict` -> class logits) for the linear evaluation / fine-tuning run.
"""
from s4l_jax.objectives import s4l_exemplar


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  del rng
  streams = [batch[k] for k in ("unlabeled", "labeled") if k in batch]
  num_images = sum(s["image"].shape[0] for s in streams)
  _, new_stats, emb = s4l_exemplar.embed(params, batch_stats, streams, model)
  loss = s4l_exemplar.triplet_loss(emb, num_images, groups=config.loss.triplet_groups,
                                   quirk=config.loss.exemplar_id_quirk)
  return loss, (new_stats, {"triplet_loss": loss})
