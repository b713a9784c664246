"""PIRL (Misra & van der Maaten 2020): representations invariant to the jigsaw transform.

On the unlabeled stream (view `train`, the stream carries each image's train-split "index"):
    f = normalize(head "pirl_image"(trunk(v_I)))                    (B, D)
    g = normalize(head "pirl_tiles" on the 9 tiles' concatenated features)   (B, D)
the tiles being `jigsaw_tiles` of v_I (`views.make_ops_fn`), each normalised, in a random
order per image (the jigsaw transform); m_I = the memory bank's row of image I,
negatives = `loss.num_negatives` rows drawn uniformly from the bank, and
    L = lambda * NCE(m_I, g) + (1 - lambda) * NCE(m_I, f)          (`losses.pirl_nce`)
with temperature `loss.temperature`, noise ratio N / |bank| and the normaliser Z estimated
at the first step from f and the negatives (`losses.nce_log_normalizer`), then fixed (Wu et
al. 2018's NCE, which PIRL follows; without Z, N / |D| near 1 on small data would make every
negative's h ~ 1). Then the bank's rows of the
batch become normalize(momentum * m_I + (1 - momentum) * f) (`loss.bank_momentum`; the
paper's exponential moving average). The bank (`loss.bank_size` x `loss.embed_dim`, random
unit rows at step 0) is the objective's state: checkpointed, resumed bit-identically, never
exported. BN's moving averages come from the whole images' pass (the tiles' are discarded).
"""
import jax
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.data import views
from s4l_jax.objective_lib import (apply_train, check_index_pipeline, flatten_views,  # pylint: disable=g-multiple-import
                                   normalize_tiles, puzzle_logits)

REQUIRES = objectives.Requirements(streams={"unlabeled": 1},
                                   heads=("classes", "pirl_image", "pirl_tiles"),
                                   aux=("state",))
# bank_size: one row per train image; num_negatives: the dataset's (`DatasetFamily.small`).
LOSS_KEYS = {"bank_momentum": objectives.LossKey(0.5, objectives.Range(0, 1)),
             "nce_lambda": objectives.LossKey(0.5, objectives.Range(0, 1)),
             "num_negatives": objectives.LossKey(objectives.REQUIRED, objectives.AT_LEAST_ONE),
             # not the paper's 0.07: see configs/pirl.py
             "temperature": objectives.LossKey(0.5, objectives.POSITIVE),
             "bank_size": objectives.LossKey(objectives.REQUIRED, objectives.AT_LEAST_ONE),
             "embed_dim": objectives.LossKey(128, objectives.AT_LEAST_ONE)}


def check(config):
  """The index pipeline; heads pirl_image / pirl_tiles loss.embed_dim / 9 x as wide."""
  check_index_pipeline(config)
  if (config.model.heads.get("pirl_tiles") != views.NUM_TILES * config.loss.embed_dim
      or config.model.heads.get("pirl_image") != config.loss.embed_dim):
    raise ValueError("model.heads.pirl_image / pirl_tiles must be loss.embed_dim / 9 x "
                     "loss.embed_dim")


def init_state(config, rng):
  """{"bank": (bank_size, embed_dim) float32 random unit rows, "log_z": NaN (not estimated
  yet)}."""
  bank = jax.random.normal(rng, (config.loss.bank_size, config.loss.embed_dim), jnp.float32)
  return {"bank": losses.l2_normalize(bank), "log_z": jnp.full((), jnp.nan, jnp.float32)}


def update_bank(bank, index, f, momentum: float):
  """Rows `index` (B,) of `bank` <- normalize(momentum * row + (1 - momentum) * f)."""
  rows = losses.l2_normalize(momentum * bank[index] + (1.0 - momentum) * f)
  return bank.at[index].set(jax.lax.stop_gradient(rows))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  lc, stream = loss_config, batch["unlabeled"]
  images, index = stream["image"], stream["index"]
  k_tiles, k_order, k_neg = jax.random.split(rng, 3)
  outputs, new_stats = apply_train(model, params, batch_stats, images)
  f = losses.l2_normalize(outputs["pirl_image"])
  tiles = normalize_tiles(views.make_ops_fn("jigsaw_tiles")(k_tiles, images)["image"])
  order = jax.vmap(lambda k: jax.random.permutation(k, views.NUM_TILES))(
      jax.random.split(k_order, images.shape[0]))
  tile_outputs, _ = apply_train(model, params, batch_stats, flatten_views(tiles))
  g = losses.l2_normalize(puzzle_logits(tile_outputs["pirl_tiles"], order))
  bank = aux["state"]["bank"]
  memory = bank[index]
  negatives = bank[jax.random.randint(k_neg, (lc.num_negatives,), 0, bank.shape[0])]
  log_z = aux["state"]["log_z"]
  log_z = jax.lax.stop_gradient(jnp.where(
      jnp.isnan(log_z), losses.nce_log_normalizer(f, negatives, lc.temperature, bank.shape[0]),
      log_z))
  nce = lambda q: losses.pirl_nce(memory, q, negatives, lc.temperature,
                                  lc.num_negatives / bank.shape[0], log_z)
  nce_tiles, nce_image = nce(g), nce(f)
  loss = lc.nce_lambda * nce_tiles + (1.0 - lc.nce_lambda) * nce_image
  metrics = {"nce_tiles_loss": nce_tiles, "nce_image_loss": nce_image,
             "positive_similarity": jnp.mean(jnp.sum(memory * g, -1)), "nce_log_z": log_z}
  return objectives.LossOutput(loss, new_stats, metrics, {
      "bank": update_bank(bank, index, f, lc.bank_momentum), "log_z": log_z})
