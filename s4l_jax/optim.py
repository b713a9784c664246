"""Optimizers and learning-rate schedules (`s4l:trainer.py`, `simclr:lars_optimizer.py`).

* `momentum`: TF `MomentumOptimizer` semantics, `v = m*v + g + wd*W; W -= lr*v`, i.e. the
  paper's coupled L2 (`wd/2 * ||W||^2` in the loss) on kernels only, lr applied after momentum.
* `lars`: `optax.lars` (SimCLR's "classic" momentum, `v = m*v + lr*trust*(g + wd*W)`) with
  weight decay on kernels only and the trust ratio on kernels outside `lars_exclude` (SimCLR
  excludes BN parameters, biases and `head_supervised` from both; its classifier kernel gets
  a plain L2 term instead, i.e. weight decay without the trust ratio: `simclr:model_util.py`).
Schedules count in steps; configs give them in epochs of the labeled subset.
"""
import jax
import jax.numpy as jnp
import optax

from s4l_jax.models import subtrees


def kernel_mask(params):
  """True for conv/dense kernels, False for biases and BatchNorm scale/bias."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def trainable_mask(params, trainable: str):
  """True for the parameters of the top-level modules `trainable` names (`subtrees.select`:
  `all`, `heads`, or e.g. `head_classes`, `trunk+head_proj_1`)."""
  names = subtrees.select(trainable, list(params), "trainable")
  return {name: jax.tree.map(lambda _, t=name in names: t, tree) for name, tree in params.items()}


SCHEDULES = ("step", "cosine", "fixmatch_cosine", "constant")
FIXMATCH_COSINE_FRACTION = 7 / 16  # FixMatch: lr cos(7 pi k / 16 K), ends at 0.2 lr


def make_schedule(lr_config, base_lr: float, steps_per_epoch: int, total_steps: int):
  """Linear warm-up from 0, then `step` (x decay_factor at each decay epoch), `cosine` to 0,
  `fixmatch_cosine` (`base_lr cos(7 pi k / 16 K)`, k and K counted after the warm-up) or
  `constant`."""
  warmup = int(round(lr_config.warmup_epochs * steps_per_epoch))
  warmup = min(warmup, max(total_steps - 1, 0))
  if lr_config.schedule == "step":
    boundaries = {int(round(e * steps_per_epoch)): lr_config.decay_factor
                  for e in lr_config.decay_epochs}
    decay = optax.piecewise_constant_schedule(base_lr, boundaries)
    after = lambda step: decay(step)  # decay epochs are absolute, not relative to warm-up
  elif lr_config.schedule == "cosine":
    cosine = optax.cosine_decay_schedule(base_lr, max(total_steps - warmup, 1))
    after = lambda step: cosine(step - warmup)
  elif lr_config.schedule == "fixmatch_cosine":
    span = max(total_steps - warmup, 1)
    after = lambda step: base_lr * jnp.cos(FIXMATCH_COSINE_FRACTION * jnp.pi * (step - warmup)
                                           / span)
  elif lr_config.schedule == "constant":
    after = lambda step: base_lr
  else:
    raise ValueError(f"lr.schedule must be one of {', '.join(SCHEDULES)}, got "
                     f"{lr_config.schedule!r}")

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = base_lr * step / max(warmup, 1)
    return jnp.where(step < warmup, warm, after(step))
  return schedule


def lars_trust_mask(params, exclude: str):
  """`kernel_mask` without the top-level modules `exclude` names (`subtrees.select`; "" = none)."""
  mask = kernel_mask(params)
  if not exclude:
    return mask
  names = subtrees.select(exclude, list(params), "optimizer.lars_exclude")
  return {name: jax.tree.map(lambda m, keep=name not in names: m and keep, tree)
          for name, tree in mask.items()}


def make_optimizer(opt_config, schedule, params, trainable: str = "all"):
  """Returns an optax transformation; frozen parameters get zero updates."""
  mask = kernel_mask(params)
  if opt_config.name == "momentum":
    tx = optax.chain(
        optax.add_decayed_weights(opt_config.weight_decay, mask=mask),
        optax.trace(decay=opt_config.momentum, nesterov=opt_config.nesterov),
        optax.scale_by_learning_rate(schedule))
  elif opt_config.name == "lars":
    tx = optax.lars(schedule, weight_decay=opt_config.weight_decay, weight_decay_mask=mask,
                    trust_coefficient=opt_config.lars_trust_coefficient,
                    trust_ratio_mask=lars_trust_mask(params, opt_config.get("lars_exclude", "")),
                    momentum=opt_config.momentum,
                    nesterov=opt_config.nesterov)
  else:
    raise ValueError(f"optimizer.name must be momentum|lars, got {opt_config.name!r}")
  if trainable == "all":
    return tx
  labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable_mask(params, trainable))
  return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
