"""Tests for s4l_jax.data.streams."""
import ml_collections
import numpy as np
import pytest

from s4l_jax.data import streams


def _input(**sections):
  """A config's `input` with `sections` (name -> dict) next to a non-stream key."""
  return ml_collections.ConfigDict(dict(image_size=8, **sections))


def test_declared_streams_are_the_sections_with_a_source_in_name_order():
  inp = _input(unlabeled=dict(source="unlabeled", batch_size=0, view="train"),
               pseudo=dict(source="pseudo", batch_size=32, view="train"),
               labeled=dict(source="labeled", batch_size=8, view="train"),
               other=dict(batch_size=3))
  assert list(streams.declared(inp)) == ["labeled", "pseudo", "unlabeled"]
  # Seed offsets count every declared stream, batch 0 ones included.
  assert {n: k for n, (k, _) in streams.active(inp).items()} == {"labeled": 0, "pseudo": 1}
  assert streams.reads_pseudo(inp)
  inp.pseudo.batch_size = 0
  assert not streams.reads_pseudo(inp)


@pytest.mark.parametrize("n,batch", [(10, 4), (12, 4), (5, 16), (97, 32)])
def test_each_epoch_is_a_permutation(n, batch):
  stream = streams.TrainIndexStream(n, batch, seed=7)
  steps = 3 * n // np.gcd(n, batch) + 2  # Several full epochs.
  flat = np.concatenate([stream.indices(s) for s in range(steps)])
  assert flat.dtype == np.int64
  for e in range(len(flat) // n):
    np.testing.assert_array_equal(np.sort(flat[e * n:(e + 1) * n]), np.arange(n))
  assert not np.array_equal(flat[:n], flat[n:2 * n])  # Epochs are reshuffled.


def test_purity_and_seed():
  a = streams.TrainIndexStream(100, 32, seed=1)
  first = [a.indices(s) for s in range(20)]
  fresh = streams.TrainIndexStream(100, 32, seed=1)
  for s in reversed(range(20)):  # Any order, new object: same answer.
    np.testing.assert_array_equal(fresh.indices(s), first[s])
  other = streams.TrainIndexStream(100, 32, seed=2)
  assert not np.array_equal(other.indices(0), first[0])


@pytest.mark.parametrize("process_count", [1, 2, 4, 8])
def test_hosts_split_the_global_batch(process_count):
  n, batch = 50, 16
  full = streams.TrainIndexStream(n, batch, seed=3)
  hosts = [streams.TrainIndexStream(n, batch, seed=3, process_index=p,
                                    process_count=process_count)
           for p in range(process_count)]
  for step in (0, 3, 9):
    parts = [h.indices(step) for h in hosts]
    assert all(len(p) == batch // process_count for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), full.indices(step))


def test_train_stream_errors():
  with pytest.raises(ValueError, match="divisible"):
    streams.TrainIndexStream(10, 6, seed=0, process_count=4)
  with pytest.raises(ValueError, match="positive"):
    streams.TrainIndexStream(0, 4, seed=0)


@pytest.mark.parametrize("process_count", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 7, 24, 100])
@pytest.mark.parametrize("per_host", [1, 4, 9])
def test_eval_exactly_once(process_count, n, per_host):
  batch = per_host * process_count
  per = [streams.eval_batches(n, batch, p, process_count) for p in range(process_count)]
  assert len({len(b) for b in per}) == 1 and len(per[0]) == -(-n // batch)
  seen = []
  for host in per:
    for idx, mask in host:
      assert idx.shape == mask.shape == (per_host,) and mask.dtype == bool
      seen.extend(idx[mask])
      assert np.all(idx[~mask] == 0)
  np.testing.assert_array_equal(np.sort(seen), np.arange(n))
