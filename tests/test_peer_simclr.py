"""benchmarks/peer_simclr.py without PyTorch: the shared kNN / probe scores, the file lists,
this project's command (it resolves and validates), the peer's matching spec, the report."""
import json
import os
import sys

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from s4l_jax import budget, config_lib, validation
from s4l_jax.data import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import peer_simclr as ps  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_benchmarks import write_events  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_peer_parity import apply_overrides, folder  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import


def unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_matches_sklearn_weighted_neighbours():
  """On unit vectors |a - b|^2 = 2 - 2 cos: scikit-learn's euclidean kNN with weights
  exp((1 - d^2 / 2) / T) is the cosine-weighted vote; its predictions score 1.0 here."""
  rng = np.random.default_rng(0)
  bank_x, test_x = rng.normal(size=(60, 5)), rng.normal(size=(25, 5))
  bank_y = rng.integers(0, 4, 60)
  k, t = 7, 0.1
  knn = KNeighborsClassifier(k, weights=lambda d: np.exp((1 - d**2 / 2) / t))
  predicted = knn.fit(unit(bank_x), bank_y).predict(unit(test_x))
  assert ps.knn_top1(3 * bank_x, bank_y, test_x, predicted, k=k, t=t) == 1.0  # scale-free
  wrong = (predicted + 1) % 4
  assert ps.knn_top1(bank_x, bank_y, test_x, wrong, k=k, t=t) == 0.0


def test_knn_weights_by_similarity():
  """One query, bank at cos 1, 0.6, 0.6 (classes 0, 1, 1), k = 3: class 1 wins at T = 1
  (2 e^0.6 > e^1), class 0 at T = 0.1 (e^10 > 2 e^6); k beyond the bank takes the bank."""
  bank_x = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
  bank_y, query = np.array([0, 1, 1]), np.array([[2.0, 0.0]])
  assert ps.knn_top1(bank_x, bank_y, query, np.array([1]), k=3, t=1.0) == 1.0
  assert ps.knn_top1(bank_x, bank_y, query, np.array([0]), k=200, t=0.1) == 1.0
  assert ps.knn_top1(bank_x, bank_y, query, np.array([0]), k=1, t=1.0) == 1.0


def test_probe_and_final_contrast():
  rng = np.random.default_rng(1)
  centres = 5 * np.eye(3)
  y = rng.integers(0, 3, 90)
  x = centres[y] + rng.normal(size=(90, 3))
  assert ps.probe_top1(x[:60], y[:60], x[60:], y[60:]) == 1.0  # well separated
  assert ps.probe_top1(x[:60], y[:60], x[60:], (y[60:] + 1) % 3) == 0.0
  curve = [[25 * i, i / 10] for i in range(1, 13)]  # steps 25..300
  assert ps.final_contrast(curve) == pytest.approx(np.mean([1.0, 1.1, 1.2]))  # steps >= 240


def test_write_lists(folder, tmp_path):  # pylint: disable=redefined-outer-name
  lists = ps.write_lists(folder, "6", 0, str(tmp_path))
  read = lambda p: open(p).read().split()
  bank, unlabeled = read(lists["bank_list"]), read(lists["unlabeled_list"])
  held_out = read(os.path.join(tmp_path, "validation_s0.txt"))
  assert len(bank) == 6 and len(unlabeled) == 60 - len(held_out) == 54
  assert set(bank) <= set(unlabeled) and not set(held_out) & set(unlabeled)
  assert unlabeled == sorted(unlabeled) and all(p.startswith("train/") for p in unlabeled)
  assert ps.write_lists(folder, "6", 0, str(tmp_path)) == lists  # written once


def settings(data, **kw):
  return dict(dict(data=data, bank="6", steps=40, seeds=[0], impls=["s4l_jax", "lightly"],
                   batch=32, bank_batch=1, depth=10, width=1, log_every=10, peer_threads=1,
                   load="1.0"), **kw)


def test_ours_command_resolves_and_matches_the_peer_spec(folder):  # pylint: disable=redefined-outer-name
  a = settings(folder, batch=64, bank_batch=8)  # batches divisible by the suite's 8 devices
  argv = ps.ours_command(1, "/w", a)
  assert argv[1] == "main.py" and argv[3] == "--workdir=/w"
  config_path, arg = argv[2].removeprefix("--config=").split(":", 1)
  config = config_lib.load_config(os.path.join(ROOT, config_path), arg)
  apply_overrides(config, argv[4:])
  assert config.run_stages == "pretrain"
  c = config.stages.pretrain
  c.input.eval_batch_size = 512  # the folder preset's 500 over the suite's 8 devices
  validation.validate(c)
  assert c.input.unlabeled.batch_size + c.input.labeled.batch_size == 64
  ours_lr = budget.base_learning_rate(c)
  assert ours_lr * ps.LOSS_SCALE == pytest.approx(ps.lr(64)) == pytest.approx(0.03)
  assert c.lr.schedule == "cosine" and c.lr.warmup_epochs == 0 and c.total_steps == 40
  assert c.optimizer.name == "momentum" and not c.optimizer.nesterov
  head = c.model.heads.proj
  assert len(head.dims) == ps.PROJ_LAYERS and head.dims[-1] == ps.PROJ_DIM
  assert head.batch_norm and not head.use_bias and head.output_bn_bias
  view = views.parse_view(c.input.unlabeled.view)
  assert view.crops == 2 and view.area_range == (ps.PEER_VIEW["min_scale"], 1.0)
  assert "blur" not in view.ops and ps.PEER_VIEW["blur_prob"] == 0
  spec = ps.peer_spec(1, {"bank_list": "b", "unlabeled_list": "u"}, "/p", a)
  assert (spec["batch"], spec["steps"], spec["seed"]) == (64, 40, 1)
  # The same SGD update: lr_ours (2 g + wd_ours w) = lr_peer (g + wd_peer w).
  assert spec["lr"] == pytest.approx(ps.LOSS_SCALE * ours_lr)
  assert spec["lr"] * spec["weight_decay"] == pytest.approx(ours_lr * c.optimizer.weight_decay)
  assert spec["temperature"] == c.loss.temperature and spec["momentum"] == c.optimizer.momentum
  assert spec["bn_momentum"] == c.model.bn_momentum
  assert spec["head_bn_epsilon"] == c.model.bn_epsilon
  assert (spec["depth"], spec["width"]) == (c.model.depth, c.model.width)
  # The peer trains this project's trunk (its port) on this project's [-1, 1] pixels.
  assert c.model.name == "wrn" and (spec["trunk"], spec["pixels"]) == ("s4l_jax", "pm1")


def fake_features(path, rng, separable: bool):
  y = np.repeat(np.arange(3), 10)
  x = rng.normal(size=(30, 4)) + (8 * np.eye(4)[y] if separable else 0)
  np.savez(path, bank_x=x[::2], bank_y=y[::2], test_x=x[1::2], test_y=y[1::2])


def test_report_from_finished_runs(tmp_path):
  runs = str(tmp_path / "runs")
  a = settings("/data", seeds=[0, 1])
  rng = np.random.default_rng(0)
  for seed in (0, 1):
    d = ps.run_dir(runs, "s4l_jax", seed)
    os.makedirs(os.path.join(d, "pretrain"))
    write_events(os.path.join(d, "pretrain"),
                 [(s, {"train/contrast_accuracy": s / 100, "train/contrastive_loss": 10 - s / 5,
                       "steps_per_s": 2.0 if s > 10 else 0.1}) for s in (10, 20, 30, 40)])
    fake_features(os.path.join(d, "features.npz"), rng, separable=True)
    d = ps.run_dir(runs, "lightly", seed)
    os.makedirs(d)
    with open(os.path.join(d, "lightly.json"), "w") as f:
      json.dump(dict(contrast_curve=[[10, 0.1], [40, 0.3]], loss_curve=[[10, 5.0], [40, 4.0]],
                     s_per_step=0.25), f)
    if seed == 0:  # seed 1 of the peer has not finished
      fake_features(os.path.join(d, "features.npz"), rng, separable=False)
  methods = ps.write_report(a, runs, "ps", str(tmp_path / "out"))
  r = methods["simclr"]
  assert r["peer"] == "lightly" and r["steps"] == 40
  assert r["s4l_jax"] == [1.0, 1.0] and r["s4l_jax_probe"] == [1.0, 1.0]
  assert len(r["peer_top1"]) == 1 and r["peer_top1"][0] < 0.8  # random features
  assert r["parity"] is None  # the peer's second seed has not finished
  assert r["s4l_jax_contrast"] == [pytest.approx(0.4)] * 2  # steps >= 32 of 40
  assert r["peer_contrast"] == [0.3]
  assert r["s4l_jax_s_per_step"] == pytest.approx(0.5) and r["peer_s_per_step"] == 0.25
  assert r["curves"]["lightly"][1] is None
  assert r["curves"]["s4l_jax"][0]["loss_curve"][-1] == [40, pytest.approx(1.0)]  # (10 - 8) / 2
  saved = json.load(open(tmp_path / "out" / "ps.json"))
  assert set(saved) == {"settings", "methods"}
  assert set(saved["methods"]["simclr"]) >= {"peer", "steps", "s4l_jax", "peer_top1",
                                             "s4l_jax_s_per_step", "peer_s_per_step", "parity",
                                             "differences"}
  table = open(tmp_path / "out" / "ps.md").read()
  assert "| 100.00 ± 0.00 (n=2) |" in table and "not judged (< 2 seeds)" in table
  assert os.path.getsize(tmp_path / "out" / "ps.png") > 1000


def test_a_run_too_short_to_time(tmp_path):
  """One logged step (its time includes compiling): no s / step, the rest still scored."""
  d = ps.run_dir(str(tmp_path), "s4l_jax", 0)
  os.makedirs(os.path.join(d, "pretrain"))
  write_events(os.path.join(d, "pretrain"), [(1, {"contrast_accuracy": 0.5,
                                                  "contrastive_loss": 8.0})])
  fake_features(os.path.join(d, "features.npz"), np.random.default_rng(0), separable=True)
  r = ps.run_stats(str(tmp_path), "s4l_jax", 0)
  assert r["s_per_step"] is None and r["knn_top1"] == 1.0 and r["contrast_accuracy"] == 0.5
  assert ps.collect(settings("/d", steps=1), str(tmp_path))["simclr"]["s4l_jax_s_per_step"] is None
