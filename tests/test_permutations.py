"""Jigsaw permutation sets: maximin greedy against a brute-force construction, determinism,
minimum Hamming distance, errors."""
import itertools

import numpy as np
import pytest

from s4l_jax import permutations


def hamming(a, b):
  return sum(x != y for x, y in zip(a, b))


def slow_maximin(n_tiles, count):
  """The greedy written out: identity first, then the candidate (lexicographic order) with the
  largest minimum distance to the chosen ones, ties by the largest summed distance."""
  candidates = list(itertools.permutations(range(n_tiles)))
  chosen = [candidates[0]]
  while len(chosen) < count:
    rest = [p for p in candidates if p not in chosen]
    key = lambda p: (min(hamming(p, q) for q in chosen), sum(hamming(p, q) for q in chosen))
    best = max(key(p) for p in rest)
    chosen.append(next(p for p in rest if key(p) == best))
  return tuple(chosen)


@pytest.mark.parametrize("n_tiles,count", [(4, 10), (5, 12)])
def test_greedy_matches_the_written_out_construction(n_tiles, count):
  assert permutations.maximal_hamming(count, n_tiles) == slow_maximin(n_tiles, count)


def test_default_set_is_100_distinct_permutations_at_min_distance_6():
  table = np.array(permutations.maximal_hamming(100))
  assert table.shape == (100, 9) and tuple(table[0]) == tuple(range(9))
  assert (np.sort(table, axis=1) == np.arange(9)).all()
  distances = [hamming(a, b) for a, b in itertools.combinations(table.tolist(), 2)]
  assert min(distances) == 6  # The summed criterion of Algorithm 1 alone reaches only 2.
  assert permutations.maximal_hamming(100) == permutations.maximal_hamming.__wrapped__(100)


@pytest.mark.parametrize("bad,match", [
    ([[0, 1, 2]], "rows of 9"),
    ([list(range(9)), [0] * 9], "permutation of 0..8"),
    ([list(range(9))] * 2, "repeated rows"),
])
def test_check_rejects_bad_tables(bad, match):
  with pytest.raises(ValueError, match=match):
    permutations.check(bad)


def test_size_out_of_range_is_rejected():
  with pytest.raises(ValueError, match=r"num_permutations=0 must be in \[1, 9!\]"):
    permutations.maximal_hamming(0)
