"""SimCLR(v2) contrastive pretraining: NT-Xent on two views of every image (`simclr:objective.py`).

Both streams use a 2-copy view (`simclr2`): images (B, 2, H, W, C). One forward pass runs on
concat[view 1 of (unlabeled; labeled), view 2 of (unlabeled; labeled)] (2N images, N = B_u +
B_l; BatchNorm over all of them, as SimCLR concatenates the views on the batch axis), and

    L = nt_xent(proj(view 1), proj(view 2), temperature)    (+ L_linear, see below)

with head "proj" (the 3-layer projection head; its output is L2-normalised inside nt_xent) and
the negatives of each anchor taken from the whole global batch (2N - 2 views).
Memory (SimCLRv2's MoCo-style buffer, `memory_size` = K > 0; paper: K = 65536, EMA 0.999;
needs `ema_decay` or `ema_halflife_epochs` > 0): the memory network is the EMA of the weights
(`aux["ema_params"]`); the state `aux["state"]["queue"]` (K, D) holds L2-normalised keys, and
every anchor of both directions gets all K as extra negatives (2N + K logits; no gradient into
them). After the loss, the keys of this step are enqueued: the memory network's normalised
proj of view 2 only (N keys per step, MoCo's asymmetric form; both directions contrast against
the same queue), from a train-mode pass (BatchNorm over those N images, its statistics
discarded, as Mean Teacher's teacher pass), without gradient. FIFO by concatenation
(`enqueue`): any K works. At step 0 the queue holds random unit vectors (MoCo's start).
Linear evaluation while pretraining (SimCLR TF2's `lineareval_while_pretraining`): when the
model has a head "classes" (declared with `stop_gradient=True`, so it never moves the
encoder), L_linear = xent(classes, labels) on both views of the LABELED images only.
`loss` keys: temperature (0.1), linear_eval_weight (1.0), memory_size (0 = off).
"""
import jax
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.models import heads
from s4l_jax.objective_lib import accuracy, apply_train


def REQUIRES(loss_config) -> objectives.Requirements:  # pylint: disable=invalid-name
  """Two views per image and the "proj" head; with the memory, the EMA weights and the queue."""
  memory = ("ema_params", "state") if loss_config.memory_size else ()
  return objectives.Requirements(streams={"unlabeled": 2, "labeled": 2}, heads=("proj",),
                                 aux=memory)

LOSS_KEYS = {"temperature": objectives.LossKey(0.1, objectives.POSITIVE),
             "linear_eval_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE),
             "memory_size": objectives.LossKey(0, objectives.Range(0))}  # K; 0: no memory


def init_state(config, rng):
  """{"queue": (K, D) float32 random unit vectors}, K = loss.memory_size, D = proj's width."""
  dim = heads.parse_heads(config.model.heads, num_classes=1)["proj"].dims[-1]
  if dim <= 0:
    raise ValueError(f"loss.memory_size needs model.heads.proj's output width (> 0), got {dim}")
  return {"queue": losses.l2_normalize(jax.random.normal(rng, (config.loss.memory_size, dim)))}


def enqueue(queue, keys):
  """FIFO: queue (K, D), keys (N, D) -> (K, D): the keys in rows 0..N-1 (newest first), then
  the queue's first K - N rows (its oldest N rows drop out)."""
  return jnp.concatenate([keys, queue])[:queue.shape[0]]


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_u, num_l = unlabeled["image"].shape[0], labeled["image"].shape[0]
  n = num_u + num_l
  x = jnp.concatenate([unlabeled["image"][:, 0], labeled["image"][:, 0],
                       unlabeled["image"][:, 1], labeled["image"][:, 1]])
  outputs, new_stats = apply_train(model, params, batch_stats, x)
  z = outputs["proj"]
  queue = aux["state"]["queue"] if "state" in aux else None
  contrastive, contrast_acc = losses.nt_xent(z[:n], z[n:], loss_config.temperature,
                                             queue=queue)
  loss, metrics = contrastive, dict(contrastive_loss=contrastive, contrast_accuracy=contrast_acc)
  if "classes" in outputs:
    logits = jnp.concatenate([outputs["classes"][num_u:n], outputs["classes"][n + num_u:]])
    labels = jnp.tile(labeled["label"], 2)
    linear = losses.softmax_xent(logits, labels)
    loss += loss_config.linear_eval_weight * linear
    metrics.update(linear_eval_loss=linear, sup_accuracy=accuracy(logits, labels))
  if queue is None:
    return objectives.LossOutput(loss, new_stats, metrics)
  memory, _ = apply_train(model, aux["ema_params"], batch_stats, x[n:])
  keys = jax.lax.stop_gradient(losses.l2_normalize(memory["proj"].astype(jnp.float32)))
  return objectives.LossOutput(loss, new_stats, metrics, {"queue": enqueue(queue, keys)})
