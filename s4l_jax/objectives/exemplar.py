"""Self-supervised exemplar pretraining (S4L's "Exemplar + Linear / Fine-tune" baselines).

All images of both streams (the labeled batch is used as further unlabeled images, its
labels are ignored) take the `exemplar8` view; `L` = the S4L batch-hard soft-margin triplet
(`objective_lib.exemplar_triplet`, not the revisit repo's semi-hard margin-0.5 loss) over all
images together, identity = image. The "classes" head gets no loss: it only keeps the export
contract (`predict` -> class logits) for the linear evaluation / fine-tuning run.
"""
from s4l_jax import objectives
from s4l_jax.objective_lib import EXEMPLAR_LOSS_KEYS, exemplar_embeddings, exemplar_triplet

REQUIRES = objectives.Requirements(streams={"labeled": 8, "unlabeled": 8},
                                   heads=("classes", "embeddings"))

LOSS_KEYS = EXEMPLAR_LOSS_KEYS


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  streams = [batch[k] for k in ("unlabeled", "labeled") if k in batch]
  num_images = sum(s["image"].shape[0] for s in streams)
  _, new_stats, emb = exemplar_embeddings(model, params, batch_stats, streams)
  loss = exemplar_triplet(emb, num_images, groups=loss_config.triplet_groups,
                          quirk=loss_config.exemplar_id_quirk)
  return objectives.LossOutput(loss, new_stats, {"triplet_loss": loss})
