"""Self-supervised jigsaw pretraining (Noroozi & Favaro 2016; Jigsaw + Linear / Fine-tune).

The unlabeled stream (the whole train split) takes the `jigsaw` view: the 9 jittered tiles of
each image's 3x3 grid, in grid order. `objective_lib.jigsaw_loss` draws a permutation of
`loss.permutations` (P rows) per image, puts tile perm[j] in slot j, normalises each tile and
classifies the permutation with a linear head "jigsaw" on the 9 tiles' concatenated features
(shared trunk): `L = xent over the P permutations`. The labeled batch's whole images (view
`train`, labels ignored) pass through the network in training mode with no loss, only so that
BN's moving averages (which linear evaluation freezes) describe whole images, not tiles. The
"classes" head gets no loss: it keeps the export contract and is re-trained downstream.
"""
from s4l_jax import objectives
from s4l_jax.objective_lib import apply_train, check_jigsaw_head, jigsaw_loss

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 9},
                                   heads=("classes", "jigsaw"))
# loss.permutations: the (P, 9) table (`configs/common.jigsaw_task`), checked with the head.
LOSS_KEYS = {"permutations": objectives.LossKey(objectives.REQUIRED)}


def check(config):
  check_jigsaw_head(config)


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del aux
  loss, acc = jigsaw_loss(model, params, batch_stats, batch["unlabeled"]["image"],
                          loss_config.permutations, rng)
  _, new_stats = apply_train(model, params, batch_stats, batch["labeled"]["image"])
  return objectives.LossOutput(loss, new_stats, {"jigsaw_loss": loss, "jigsaw_accuracy": acc})
