"""The train streams a config declares, and their deterministic index streams (pure NumPy).

A stream is an `input` section with a `source` (`SOURCES`): `config.input.<name> =
{source, batch_size, view}`; `batch_size` 0 leaves it out of the batch. The pipelines draw
batch[name] from its source's images, stream k (in name order) with seed `config.seed + k`;
objectives read batch[name] for the names their `Requirements.streams` list.

Training order is an infinite sequence made of per-epoch permutations; the global batch of
step s is positions [s * B, (s + 1) * B) of it, so `indices(step)` depends only on
(seed, step) and resuming at any step is bit-exact.
"""
import ml_collections
import numpy as np

# Where a stream draws its images from: `labeled` the labeled subset with its labels (joined by
# the pseudo-labelled images when the run has pseudo-labels and no `pseudo` stream: one shared
# stream), `unlabeled` every train image but the validation set (S4L; labels for logging only),
# `pseudo` the pseudo-labelled images alone (a teacher's labels, `pipeline.pseudo_label_subset`).
SOURCES = ("labeled", "unlabeled", "pseudo")


def declared(input_config) -> dict:
  """{name: section} of the streams `input_config` (a config's `input`) declares, in name
  order (the order of their seeds)."""
  return {name: spec for name, spec in sorted(input_config.items())
          if isinstance(spec, ml_collections.ConfigDict) and "source" in spec}


def active(input_config) -> dict:
  """{name: (seed offset, section)} of the declared streams with batch_size > 0."""
  return {name: (k, spec) for k, (name, spec) in enumerate(declared(input_config).items())
          if spec.batch_size}


def reads_pseudo(input_config) -> bool:
  """Whether a stream with batch_size > 0 draws from the `pseudo` source (the labeled source
  then keeps its ground truth only)."""
  return any(spec.source == "pseudo" for _, spec in active(input_config).values())


class TrainIndexStream:
  """Host-local training indices: `indices(step)` -> (global_batch // process_count,) int64."""

  def __init__(self, num_examples: int, global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    if num_examples <= 0 or global_batch <= 0:
      raise ValueError(f"num_examples ({num_examples}) and global_batch ({global_batch}) "
                       "must be positive.")
    if global_batch % process_count:
      raise ValueError(f"global_batch {global_batch} is not divisible by process_count "
                       f"{process_count}.")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    self.num_examples = num_examples
    self.global_batch = global_batch
    self.seed = seed
    self.local_batch = global_batch // process_count
    self._offset = process_index * self.local_batch
    self._cache = {}  # epoch -> permutation; holds the last few epochs only.

  def permutation(self, epoch: int) -> np.ndarray:
    """The visiting order (num_examples,) int64 of `epoch`."""
    if epoch not in self._cache:
      if len(self._cache) >= 4:
        self._cache.pop(next(iter(self._cache)))
      self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
          self.num_examples).astype(np.int64)
    return self._cache[epoch]

  def indices(self, step: int) -> np.ndarray:
    """Dataset indices (local_batch,) int64 of this host's slice of the global batch `step`."""
    positions = step * self.global_batch + self._offset + np.arange(self.local_batch)
    epochs, within = np.divmod(positions, self.num_examples)
    out = np.empty(self.local_batch, np.int64)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self.permutation(int(epoch))[within[sel]]
    return out


def eval_batches(num_examples: int, global_batch: int, process_index: int = 0,
                 process_count: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
  """Host-local eval batches [(indices (b,) int64, mask (b,) bool)], b = global_batch // P.

  Global batch i holds positions [i * B, (i + 1) * B) in order, host p its p-th contiguous
  slice. Positions >= num_examples are padding: mask False, index 0. Every host gets
  ceil(num_examples / B) batches, and every example is masked in exactly once overall.
  """
  if global_batch % process_count:
    raise ValueError(f"global_batch {global_batch} is not divisible by process_count "
                     f"{process_count}.")
  local = global_batch // process_count
  batches = []
  for start in range(0, num_examples, global_batch):
    positions = start + process_index * local + np.arange(local, dtype=np.int64)
    mask = positions < num_examples
    batches.append((np.where(mask, positions, 0), mask))
  return batches
