"""Jigsaw permutation sets: P permutations of the 9 tiles far apart in Hamming distance.

Noroozi & Favaro (2016, Algorithm 1) pick P of the 9! permutations greedily, each new one the
farthest (summed Hamming distance) from those already chosen, the first at random. Here the
first is the identity and the criterion is the *minimum* distance to the chosen set (ties:
the larger summed distance, then the lower lexicographic index), so the set is deterministic
and its minimum pairwise distance is as large as the greedy can make it (P = 100: 6, where the
summed criterion alone gives 2; both average 8.1).
"""
import functools
import itertools
import math

import numpy as np


@functools.lru_cache(maxsize=4)
def maximal_hamming(num_permutations: int, num_tiles: int = 9) -> tuple[tuple[int, ...], ...]:
  """`num_permutations` permutations of range(num_tiles), greedy maximin Hamming distance.

  Returns a tuple of tuples (P, num_tiles) (a config value); row 0 is the identity. ValueError
  unless 1 <= P <= num_tiles!.
  """
  if not 1 <= num_permutations <= math.factorial(num_tiles):
    raise ValueError(f"num_permutations={num_permutations} must be in [1, {num_tiles}!]")
  candidates = np.array(list(itertools.permutations(range(num_tiles))), np.int8)
  chosen = [0]
  distance = lambda j: (candidates != candidates[j]).sum(axis=1, dtype=np.int64)
  nearest, total = distance(0), distance(0)
  for _ in range(num_permutations - 1):
    score = nearest * (num_tiles * num_permutations + 1) + total  # min first, then sum
    score[chosen] = -1
    j = int(score.argmax())
    chosen.append(j)
    d = distance(j)
    nearest, total = np.minimum(nearest, d), total + d
  return tuple(tuple(int(t) for t in candidates[j]) for j in chosen)


def check(permutations, num_tiles: int = 9) -> np.ndarray:
  """`permutations` as int32 (P, num_tiles); ValueError (one line) unless each row is a
  permutation of range(num_tiles) and no row repeats."""
  table = np.asarray(permutations)
  if table.ndim != 2 or table.shape[1] != num_tiles or not len(table):
    raise ValueError(f"loss.permutations must be P >= 1 rows of {num_tiles} tile indices, got "
                     f"shape {table.shape}")
  if (np.sort(table, axis=1) != np.arange(num_tiles)).any():
    raise ValueError(f"loss.permutations: every row must be a permutation of 0..{num_tiles - 1}")
  if len(np.unique(table, axis=0)) != len(table):
    raise ValueError("loss.permutations has repeated rows")
  return table.astype(np.int32)
