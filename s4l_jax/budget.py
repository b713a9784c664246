"""A run's budget from its config: its length in steps (`total_steps`) and its peak learning
rate (`base_learning_rate`), from the duration keys, the streams' batch sizes and the
dataset's sizes."""
import math

from s4l_jax.data import streams

# The run's length: `total_steps` if > 0, else exactly one of the others (`check_duration`).
DURATION_KEYS = ("total_steps", "total_epochs", "total_unlabeled_epochs", "total_examples")
# Units of `lr.warmup_epochs` / `lr.decay_epochs`: passes over the labeled or unlabeled stream.
EPOCH_STREAMS = ("labeled", "unlabeled")
LR_SCALINGS = ("linear", "sqrt")
LR_BATCHES = ("labeled", "unlabeled", "all")  # `lr.batch_of`: B in the lr scaling (all: every
# stream's, `data/streams.py`)


def set_duration(c, **duration):
  """Sets the run's length to the one given `DURATION_KEYS` entry, zeroing the others."""
  (key, value), = duration.items()
  if key not in DURATION_KEYS:
    raise ValueError(f"Unknown duration key {key!r}; valid: {', '.join(DURATION_KEYS)}")
  for k in DURATION_KEYS:
    c[k] = type(c[k])(value if k == key else 0)


def check_duration(config):
  """ValueError unless the run's length is given: `total_steps` > 0 (which overrides the
  others, e.g. `--config.total_steps=N` on an epoch-based preset), or else exactly one of the
  other `DURATION_KEYS` > 0; none may be < 0."""
  values = {k: config[k] for k in DURATION_KEYS}
  for key, value in values.items():
    if value < 0:
      arg = " (the config arg steps=)" if key == "total_steps" else ""
      raise ValueError(f"{key}={value}{arg} must be >= 0")
  if values.pop("total_steps"):
    return
  if sum(bool(v) for v in values.values()) != 1:
    given = ", ".join(f"{k}={v}" for k, v in values.items() if v) or "all 0"
    raise ValueError(f"Set total_steps > 0 (the config arg steps=N) or exactly one of "
                     f"{', '.join(values)} > 0, the others 0; got {given}")


def steps_per_epoch(num_labeled: int, labeled_batch: int) -> int:
  """S4L's epoch is one pass over the *labeled* subset (`s4l:trainer.py`)."""
  return max(1, num_labeled // labeled_batch)


def steps_per_unlabeled_epoch(num_unlabeled: int, unlabeled_batch: int) -> float:
  """Steps of one pass over the unlabeled stream (not rounded: a pass ends mid-batch)."""
  if not unlabeled_batch:
    raise ValueError("Epochs of the unlabeled stream need input.unlabeled.batch_size > 0")
  return num_unlabeled / unlabeled_batch


def schedule_steps_per_epoch(config, num_labeled: int, num_unlabeled: int) -> float:
  """Steps per epoch of `lr.warmup_epochs` / `lr.decay_epochs` (stream `lr.epochs_of`)."""
  if config.lr.epochs_of == "unlabeled":
    return steps_per_unlabeled_epoch(num_unlabeled, config.input.unlabeled.batch_size)
  return steps_per_epoch(num_labeled, config.input.labeled.batch_size)


def total_steps(config, num_labeled: int, num_unlabeled: int) -> int:
  """Training steps of the run (big_vision's steps()): `total_steps` when > 0, else from the one
  other `DURATION_KEYS` entry set.

  `total_epochs` are passes over the labeled subset (S4L's epoch), `total_unlabeled_epochs`
  over the unlabeled stream (the whole train split), `total_examples` labeled examples;
  partial steps round up.
  """
  check_duration(config)
  if config.total_steps:
    return int(config.total_steps)
  if config.total_epochs:
    steps = config.total_epochs * steps_per_epoch(num_labeled, config.input.labeled.batch_size)
  elif config.total_unlabeled_epochs:
    steps = config.total_unlabeled_epochs * steps_per_unlabeled_epoch(
        num_unlabeled, config.input.unlabeled.batch_size)
  else:
    steps = config.total_examples / config.input.labeled.batch_size
  return int(math.ceil(steps))


def lr_batch_size(config) -> int:
  """B of the lr scaling: the labeled, the unlabeled or every stream's source images per
  step."""
  if config.lr.batch_of == "all":
    return sum(spec.batch_size for spec in streams.declared(config.input).values())
  return config.input[config.lr.batch_of].batch_size


def base_learning_rate(config) -> float:
  """The peak learning rate from `lr.base` and the batch B (`lr_batch_size`).

  `lr.scaling="linear"`: `base * B / scale_batch_size` (or `base` when scale_batch_size is 0);
  `"sqrt"`: `base * sqrt(B)` (SimCLR: 0.075 * sqrt(4096) = 4.8).
  """
  batch = lr_batch_size(config)
  if config.lr.scaling == "sqrt":
    return config.lr.base * math.sqrt(batch)
  if config.lr.scale_batch_size:
    return config.lr.base * batch / config.lr.scale_batch_size
  return config.lr.base
