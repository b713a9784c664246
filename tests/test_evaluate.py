"""Tests for s4l_jax.evaluate's hit counting against an independent NumPy implementation, and
the images it scores an export on."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import evaluate
from s4l_jax.data import sources, views


def _np_topk_hits(logits, labels, k):
  """Per row: a miss if any logit is NaN/inf, else a hit iff fewer than k other classes have a
  logit >= the label's (ties go against the label)."""
  out = []
  for row, label in zip(np.asarray(logits, np.float64), labels):
    if not np.all(np.isfinite(row)):
      out.append(0.0)
      continue
    beaten_by = sum(1 for c, v in enumerate(row) if c != label and v >= row[label])
    out.append(float(beaten_by < k))
  return np.array(out, np.float32)


def _bad_logits(seed, n=64, c=10):
  """Random logits rounded to a coarse grid (many ties), with whole tied rows, NaN and +-inf."""
  rng = np.random.RandomState(seed)
  logits = np.round(rng.randn(n, c) * 2).astype(np.float32)  # about 9 distinct values: ties
  labels = rng.randint(0, c, n)
  logits[0] = 0.0                                  # constant row
  logits[1, labels[1]] = np.nan                    # NaN at the label
  logits[2, (labels[2] + 1) % c] = np.nan          # NaN elsewhere
  logits[3, labels[3]] = np.inf                    # +inf at the label would otherwise win
  logits[4, (labels[4] + 3) % c] = -np.inf         # -inf elsewhere
  logits[5] = 7.0                                  # another constant row
  logits[6, labels[6]] = logits[6].max()           # label tied with the max
  logits[7] = np.arange(c)                         # strictly ordered: label's rank is exact
  for i in rng.choice(np.arange(8, n), 8, replace=False):
    logits[i, rng.randint(c)] = rng.choice([np.nan, np.inf, -np.inf])
  return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 5, 9, 10])
def test_topk_hits_matches_numpy(seed, k):
  logits, labels = _bad_logits(seed)
  got = np.asarray(evaluate.topk_hits(jnp.asarray(logits), jnp.asarray(labels), k))
  want = _np_topk_hits(logits, labels, k)
  assert got.dtype == np.float32 and got.shape == (64,)
  np.testing.assert_array_equal(got, want)
  every = float(k >= 10)  # k covers all 10 classes: a finite constant row is then a hit
  assert want[:6].tolist() == [every, 0.0, 0.0, 0.0, 0.0, every]  # the injected rows, by hand


def test_topk_hits_untied_finite_matches_argsort():
  rng = np.random.RandomState(3)
  logits = rng.randn(50, 10).astype(np.float32)
  labels = rng.randint(0, 10, 50)
  for k in (1, 3, 5, 10):
    want = [labels[i] in np.argsort(-logits[i])[:k] for i in range(50)]
    np.testing.assert_array_equal(evaluate.topk_hits(logits, labels, k), np.float32(want))


@pytest.mark.parametrize("fill", [np.nan, 0.0, 3.5, np.inf, -np.inf])
def test_nan_and_constant_logits_score_zero(fill):
  logits = jnp.full((20, 10), fill, jnp.float32)
  labels = jnp.asarray(np.arange(20) % 10)
  sums = evaluate.masked_sums(logits, labels, jnp.ones(20))
  assert float(sums["top1"]) == 0.0
  assert float(sums["top5"]) == 0.0
  assert float(sums["count"]) == 20.0


def test_nan_row_is_a_miss_even_if_label_is_largest():
  logits = np.array([[5.0, 1.0, np.nan], [5.0, 1.0, 0.0]], np.float32)
  np.testing.assert_array_equal(evaluate.topk_hits(logits, np.array([0, 0]), 1), [0.0, 1.0])


def test_masked_sums_matches_numpy():
  logits, labels = _bad_logits(4, n=40)
  mask = np.random.RandomState(5).rand(40) > 0.3
  sums = evaluate.masked_sums(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  np.testing.assert_allclose(float(sums["top1"]), (_np_topk_hits(logits, labels, 1) * mask).sum())
  np.testing.assert_allclose(float(sums["top5"]), (_np_topk_hits(logits, labels, 5) * mask).sum())
  assert float(sums["count"]) == mask.sum()
  # Fewer than 5 classes: top-5 covers every class, so every finite row is a top-5 hit.
  few = np.array([[1.0, 1.0, 1.0], [0.0, np.nan, 2.0]], np.float32)
  sums = evaluate.masked_sums(few, np.array([0, 2]), np.ones(2))
  assert (float(sums["top1"]), float(sums["top5"])) == (0.0, 1.0)


@pytest.mark.parametrize("eval_crop", [None, "central_crop_875"])
def test_export_batches_take_the_runs_eval_crop(tmp_path, eval_crop):
  """The CLI scores what the run evaluated: export.json's `eval_crop` (absent in older
  exports: the stored images) on the in-memory images."""
  description = {"class_names": [str(d) for d in range(10)], "num_classes": 10,
                 "input_size": [8, 8, 3]}
  if eval_crop:
    description["eval_crop"] = eval_crop
  (tmp_path / "export.json").write_text(json.dumps(description))
  batches, _ = evaluate.export_split_batches(str(tmp_path), "digits", batch_size=400)
  got = next(batches)
  stored = sources.load_split("digits", "test", image_size=8).images
  want = views.make_eval_crop_fn(eval_crop, image_size=8)(stored) if eval_crop else stored
  np.testing.assert_array_equal(got["image"][got["mask"]], want)
