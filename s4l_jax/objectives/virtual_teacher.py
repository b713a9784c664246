"""Teacher-free KD with a virtual teacher (Tf-KD-reg, Yuan et al. 2020) on the labeled images.

    L = (1 - alpha) xent(s, y) + alpha T^2 mean -sum_k softmax(log p_t / T)_k log softmax(s / T)_k
with p_t = `losses.virtual_teacher` (a = `loss.correct_prob` on the label, the rest shared
evenly): KD as a learned label smoothing, with no teacher network. The teacher is tempered as a
network's logits would be (logits log p_t); Yuan et al.'s code tempers the probabilities
themselves (softmax(p_t / T)). The KL of the paper and this cross-entropy differ by the
teacher's entropy, a constant: same gradients. `loss` keys: alpha, temperature, correct_prob.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1}, heads=("classes",))
LOSS_KEYS = {"alpha": objectives.LossKey(0.5, objectives.Range(0, 1)),
             "correct_prob": objectives.LossKey(0.9, objectives.Range(0, 1)),
             "temperature": objectives.LossKey(4.0, objectives.POSITIVE)}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  lc, labeled = loss_config, batch["labeled"]
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"])
  logits = outputs["classes"]
  teacher = losses.virtual_teacher(labeled["label"], logits.shape[-1], lc.correct_prob)
  kd = lc.temperature ** 2 * losses.soft_xent(logits, jnp.log(teacher), lc.temperature)
  sup = losses.softmax_xent(logits, labeled["label"])
  loss = (1.0 - lc.alpha) * sup + lc.alpha * kd
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup, "kd_loss": kd, "sup_accuracy": accuracy(logits, labeled["label"])})
