"""S4L-Rotation / S4L-Exemplar / self-supervised pretraining / linear eval / fine-tune.

Each loss is checked against a NumPy recomputation from the model's own outputs, with
hand-built batches for the row bookkeeping; configs against `s4l:config/*.sh`; every method
runs end to end on digits; the loss falls on a fixed repeated batch.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import budget, config_lib, losses, objective_lib, objectives, optim, runner, train
from s4l_jax import train_state
from s4l_jax.models import build_model
from testing_utils import load_config, tiny

S = 8           # image side
C = 5           # classes
D_EMB = 6       # embedding dim
HEADS = dict(classes=-1, rotations=4, embeddings=D_EMB)


@pytest.fixture(scope="module")
def model_and_vars():
  model = build_model(dict(name="wrn", depth=10, width=1, heads=HEADS), C)
  init = jax.jit(functools.partial(model.init, train=False))
  return model, jax.device_get(init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 3))))


def cfg(**loss):
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=8)
  c.loss.update(dict(rot_weight=1.0, triplet_weight=1.0, triplet_groups=1,
                     exemplar_id_quirk=False) | loss)
  return c


def stream(rng, b, views, with_rotation=False):
  out = {"image": rng.uniform(-1, 1, (b, views, S, S, 3)).astype(np.float32),
         "label": rng.integers(0, C, (b,)).astype(np.int32)}
  if with_rotation:  # Deliberately not [0, 1, 2, 3]: labels must come from the batch.
    out["rotation"] = np.stack([rng.permutation(4) for _ in range(b)]).astype(np.int32)
  return out


def forward(model, variables, rows):
  """Training-mode outputs (NumPy) for the list of (H, W, C) images `rows`."""
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  return jax.tree.map(np.asarray, apply(variables, np.stack(rows))[0])


def np_xent(logits, labels):
  logits = logits.astype(np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return -logp[np.arange(len(labels)), labels].mean()


def np_triplet(emb, ids):
  emb = emb.astype(np.float64)
  emb /= np.sqrt(np.maximum((emb**2).sum(1, keepdims=True), 1e-12))
  dist = np.sqrt(np.maximum(((emb[:, None] - emb[None]) ** 2).sum(-1), 1e-12))
  out = []
  for j in range(len(ids)):
    pos = [dist[j, k] for k in range(len(ids)) if k != j and ids[k] == ids[j]]
    neg = [dist[j, k] for k in range(len(ids)) if ids[k] != ids[j]]
    out.append(np.logaddexp(0.0, max(pos) - min(neg)))
  return np.mean(out)


def run_objective(name, model, variables, batch, config):
  loss_fn = jax.jit(functools.partial(objectives.get(name).loss_fn, model=model, loss_config=config.loss,
                                      aux={}))
  loss, stats, metrics, _ = loss_fn(variables["params"], variables["batch_stats"], batch, None)
  return float(loss), stats, jax.tree.map(float, metrics)


@pytest.mark.slow
def test_s4l_rotation_loss_and_bookkeeping(model_and_vars):
  model, variables = model_and_vars
  rng = np.random.default_rng(0)
  batch = {"unlabeled": stream(rng, 3, 4, True), "labeled": stream(rng, 2, 4, True)}
  # Row order: unlabeled image i rotation r, then labeled, each image-major.
  rows, rot, cls = [], [], []
  for name in ("unlabeled", "labeled"):
    for i in range(batch[name]["image"].shape[0]):
      for r in range(4):
        rows.append(batch[name]["image"][i, r])
        rot.append(batch[name]["rotation"][i, r])
        cls.append(batch[name]["label"][i])
  out = forward(model, variables, rows)
  rot, cls = np.array(rot), np.array(cls)
  rot_u = np_xent(out["rotations"][:12], rot[:12])
  rot_l = np_xent(out["rotations"][12:], rot[12:])
  sup = np_xent(out["classes"][12:], cls[12:])
  loss, _, m = run_objective("s4l_rotation", model, variables, batch, cfg(rot_weight=0.7))
  np.testing.assert_allclose([m["rot_unlabeled_loss"], m["rot_labeled_loss"], m["sup_loss"]],
                             [rot_u, rot_l, sup], rtol=1e-5)
  np.testing.assert_allclose(loss, sup + 0.7 * (rot_u + rot_l) / 2, rtol=1e-5)
  # Self-supervised rotation: one mean over all 20 rotated images of both streams.
  loss, _, _ = run_objective("rotation", model, variables, batch, cfg())
  np.testing.assert_allclose(loss, np_xent(out["rotations"], rot), rtol=1e-5)


def test_exemplar_ids_and_quirk():
  np.testing.assert_array_equal(losses.exemplar_ids(3, 8), np.repeat(np.arange(3), 8))
  np.testing.assert_array_equal(losses.exemplar_ids(8, 8, quirk=True), losses.exemplar_ids(8, 8))
  np.testing.assert_array_equal(losses.exemplar_ids(3, 8, quirk=True), np.arange(24) // 3)


@pytest.mark.slow
def test_s4l_exemplar_loss_matches_numpy(model_and_vars):
  model, variables = model_and_vars
  rng = np.random.default_rng(1)
  batch = {"unlabeled": stream(rng, 4, 8), "labeled": stream(rng, 2, 8)}
  rows = [batch[n]["image"][i, v] for n in ("unlabeled", "labeled")
          for i in range(batch[n]["image"].shape[0]) for v in range(8)]
  out = forward(model, variables, rows)
  emb_u, emb_l = out["embeddings"][:32], out["embeddings"][32:]
  ex_u = np_triplet(emb_u, np.arange(32) // 8)
  ex_l = np_triplet(emb_l, np.arange(16) // 8)
  sup = np_xent(out["classes"][32:], np.repeat(batch["labeled"]["label"], 8))
  loss, _, m = run_objective("s4l_exemplar", model, variables, batch, cfg(triplet_weight=0.5))
  np.testing.assert_allclose([m["triplet_unlabeled_loss"], m["triplet_labeled_loss"],
                              m["sup_loss"]], [ex_u, ex_l, sup], rtol=1e-4)
  np.testing.assert_allclose(loss, sup + 0.5 * (ex_u + ex_l) / 2, rtol=1e-4)
  # Per-core groups (2 groups of 2 images) and the released code's ids (j // 4 here).
  triplet = lambda **kw: float(jax.jit(functools.partial(
      objective_lib.exemplar_triplet, num_images=4, **kw))(losses.l2_normalize(emb_u)))
  np.testing.assert_allclose(triplet(groups=2), (np_triplet(emb_u[:16], np.arange(16) // 8) +
                                                 np_triplet(emb_u[16:], np.arange(16) // 8)) / 2,
                             rtol=1e-4)
  quirk = triplet(quirk=True)
  np.testing.assert_allclose(quirk, np_triplet(emb_u, np.arange(32) // 4), rtol=1e-4)
  assert abs(quirk - ex_u) > 1e-3
  # Self-supervised exemplar: one triplet over all 6 images, ids unique across streams.
  loss, _, _ = run_objective("exemplar", model, variables, batch, cfg())
  np.testing.assert_allclose(loss, np_triplet(out["embeddings"], np.arange(48) // 8), rtol=1e-4)


@pytest.mark.slow
def test_linear_eval_freezes_trunk_and_bn(model_and_vars):
  _, variables = model_and_vars
  # configs/linear_eval.py's classes head: pre_logits through stop_gradient (same parameters).
  lin = load_config("linear_eval", "pretrained=/some/path")
  assert lin.model.heads.to_dict() == {"classes": {"dims": -1, "stop_gradient": True}}
  model = build_model(dict(name="wrn", depth=10, width=1,
                           heads=dict(HEADS, classes=lin.model.heads.classes)), C)
  # Non-trivial running statistics, so that train- and eval-mode BN differ.
  variables = dict(variables, batch_stats=jax.tree.map(lambda x: 1.5 * x,
                                                       variables["batch_stats"]))
  rng = np.random.default_rng(2)
  batch = {"labeled": {"image": rng.uniform(-1, 1, (6, S, S, 3)).astype(np.float32),
                       "label": rng.integers(0, C, (6,)).astype(np.int32)}}
  def loss_fn(*args):
    out = objectives.get("linear_eval").loss_fn(*args, model=model, loss_config=cfg().loss,
                                                aux={})
    return out.loss, out.batch_stats
  (loss, stats), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables["params"], variables["batch_stats"], batch, None)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(variables["batch_stats"])):
    np.testing.assert_array_equal(a, b)
  assert all(not np.any(g) for g in jax.tree.leaves(grads["trunk"]))
  assert np.any(grads["head_classes"]["kernel"])
  apply = jax.jit(functools.partial(model.apply, train=False))
  pre = np.asarray(apply(variables, batch["labeled"]["image"])["pre_logits"])
  head = variables["params"]["head_classes"]
  np.testing.assert_allclose(loss, np_xent(pre @ head["kernel"] + head["bias"],
                                           batch["labeled"]["label"]), rtol=1e-5)


# `s4l:config/s4l_{rotation,exemplar}.sh`: (config, B_l, B_u, lr, lr scaling, wd, warm-up,
# decays, end, steps at 10%).
PAPER_ROWS = [
    ("s4l_rotation", 256, 256, 0.03, 0, 1e-3, 5, (140, 160, 180), 200, 100_000),
    ("s4l_exemplar", 512, 512, 0.1, 0, 1e-3, 10, (140, 160, 180), 200, 50_000),
]


@pytest.mark.parametrize("row", PAPER_ROWS, ids=lambda r: r[0])
def test_imagenet_configs_match_paper(row):
  name, b_l, b_u, lr, scale, wd, warmup, decays, end, steps = row
  c = load_config(name, "labels=10pct")
  assert (c.input.labeled.batch_size, c.input.unlabeled.batch_size, c.lr.base,
          c.lr.scale_batch_size, c.optimizer.weight_decay, c.lr.warmup_epochs,
          tuple(c.lr.decay_epochs), c.total_epochs) == (b_l, b_u, lr, scale, wd, warmup,
                                                        decays, end)
  assert budget.total_steps(c, 128_000, 1_281_167) == steps
  assert c.model.name == "resnet50v2" and c.model.filters_factor == 4
  if name == "s4l_rotation":
    assert c.loss.rot_weight == 1.0 and c.model.heads.rotations == 4
    assert c.evals.test.rotation_average and c.input.unlabeled.view == "rotate4"
  else:
    assert (c.loss.triplet_weight, c.loss.embed_dim, c.model.heads.embeddings) == (1.0, 1000,
                                                                                   1000)
    assert not c.loss.exemplar_id_quirk and c.input.unlabeled.view == "exemplar8"


def test_pretrain_and_eval_configs():
  rot = load_config("rotation")  # 35 passes over 1,281,167 images at B_u = 256.
  assert budget.total_steps(rot, 128_000, 1_281_167) == 175_160
  with pytest.raises(ValueError, match="pretrained=WORKDIR/export"):
    load_config("linear_eval", "dataset=digits")
  with pytest.raises(ValueError, match="pretrained=WORKDIR/export"):
    load_config("finetune")
  lin = load_config("linear_eval", "pretrained=/some/path")
  assert (lin.objective, lin.trainable, lin.init_from) == ("linear_eval", "heads", "/some/path")
  ft = load_config("finetune", "pretrained=/some/path,labels=1pct")
  assert (ft.objective, ft.trainable, ft.lr.base) == ("supervised", "all", 0.01)


@pytest.fixture(scope="module")
def rotation_export(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("rotation"))
  config = tiny(load_config("rotation", "dataset=digits"), steps=2, batch=8)
  results = runner.run(config, workdir)
  assert np.isfinite(results["top1"]) and "rot_avg_top1" in results["evals"]["test"]
  return os.path.join(workdir, "export")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s4l_rotation", "s4l_exemplar", "exemplar", "linear_eval",
                                  "finetune"])
def test_runs_on_digits(name, rotation_export, tmp_path):
  arg = "dataset=digits" + (f",pretrained={rotation_export}"
                            if name in ("linear_eval", "finetune") else "")
  config = tiny(load_config(name, arg), steps=2, batch=8)
  config.checkpoint_every_steps = 100
  for evaluator in config.evals.values():  # Covered by the rotation fixture; saves a compile.
    evaluator.rotation_average = False
  runner.run(config, str(tmp_path))
  events = [f for f in os.listdir(tmp_path) if f.startswith("events")]
  assert events and os.path.exists(tmp_path / "export" / "export.json")
  if name == "linear_eval":  # The trunk is the pretrained one, untouched.
    from s4l_jax import export
    before, after = (export.load_variables(p) for p in (rotation_export, tmp_path / "export"))
    for a, b in zip(jax.tree.leaves(before["params"]["trunk"]),
                    jax.tree.leaves(after["params"]["trunk"])):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["s4l_rotation", "s4l_exemplar"])
@pytest.mark.slow
def test_loss_decreases_on_fixed_batch(name):
  config = tiny(load_config(name, "dataset=digits"), batch=2)
  model = build_model(config.model, 10)
  init = jax.jit(functools.partial(model.init, train=False))
  variables = jax.device_get(init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 3))))
  tx = optim.make_optimizer(config.optimizer, lambda _: 0.05, variables["params"])
  step = jax.jit(train.make_train_step(model, objectives.get(name), tx, config, decay=0.0))
  rng = np.random.default_rng(0)
  raw = {k: {"image": rng.integers(0, 256, (2, S, S, 3), dtype=np.uint8),
             "label": rng.integers(0, 10, (2,)).astype(np.int32)}
         for k in ("labeled", "unlabeled")}
  state = train_state.create(variables, tx, use_ema=False)
  seen = []
  for _ in range(10):
    state, metrics = step(state, raw, {})
    seen.append(float(metrics["loss"]))
  assert np.all(np.isfinite(seen)) and np.mean(seen[-3:]) < np.mean(seen[:3]), seen


def test_core_order_puts_each_cores_share_of_both_streams_together():
  # streams of 6 and 3 rows on 3 cores: core g = unlabeled rows 2g, 2g+1 + labeled row 6+g
  np.testing.assert_array_equal(objective_lib.core_order([6, 3], 3),
                                [0, 1, 6, 2, 3, 7, 4, 5, 8])
  np.testing.assert_array_equal(objective_lib.core_order([4, 8], 6),  # 2 cores
                                [0, 1, 4, 5, 6, 7, 2, 3, 8, 9, 10, 11])
  assert objective_lib.core_order([6, 3], None) is None  # global BN: concat order kept
  assert objective_lib.core_order([6, 3], 0) is None
  assert objective_lib.core_order([6], 2) is None  # one stream: contiguous groups are cores
  with pytest.raises(ValueError, match="must divide the 9 rows"):
    objective_lib.core_order([6, 3], 2)
  with pytest.raises(ValueError, match=r"makes 3 groups \(cores\), which must divide"):
    objective_lib.core_order([4, 5], 3)


def test_bn_groups_are_per_core_batches_numpy():
  """A one-BN model: each row normalised with the statistics of its core's rows (NumPy), the
  running statistics moved by the mean over cores of the per-core mean / variance."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import BatchNorm  # pylint: disable=g-import-not-at-top

  class Trunk(nn.Module):
    bn_group_size: int | None = None

  class OneBN(nn.Module):
    trunk: Trunk

    @nn.compact
    def __call__(self, x, train):
      y = BatchNorm(use_running_average=not train, momentum=0.5, epsilon=1e-3,
                    group_size=self.trunk.bn_group_size)(x.reshape(x.shape[0], -1))
      return {"classes": y}

  rng = np.random.default_rng(0)
  u, l, cores = rng.normal(size=(8, 1, 1, 3)) * 3 + 1, rng.normal(size=(4, 1, 1, 3)), 4
  x = jnp.asarray(np.concatenate([u, l]).astype(np.float32))
  model = OneBN(Trunk(bn_group_size=3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  out, stats = objective_lib.apply_train_streams(model, variables["params"],
                                                 variables["batch_stats"], x, [8, 4])
  want, means, variances = np.zeros((12, 3)), [], []
  for g in range(cores):  # core g: unlabeled rows 2g, 2g+1 and labeled row g
    rows = [2 * g, 2 * g + 1, 8 + g]
    xs = np.concatenate([u, l]).reshape(12, 3)[rows].astype(np.float64)
    means.append(xs.mean(0))
    variances.append(xs.var(0))
    want[rows] = (xs - means[-1]) / np.sqrt(variances[-1] + 1e-3)
  np.testing.assert_allclose(out["classes"], want, rtol=1e-5, atol=1e-5)
  bn = stats["BatchNorm_0"]
  np.testing.assert_allclose(bn["mean"], 0.5 * np.mean(means, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bn["var"], 0.5 + 0.5 * np.mean(variances, 0), rtol=1e-5)
  contiguous = objective_lib.apply_train(model, variables["params"],  # the old, mixed groups
                                         variables["batch_stats"], x)[0]["classes"]
  assert not np.allclose(contiguous, want, atol=1e-3)


@pytest.mark.slow
def test_bn_groups_match_separate_runs_per_core(model_and_vars):
  """S4L-Rotation with `bn_group_size` = one core's rows equals running each core's batch
  (its unlabeled + labeled images, all rotations) through a global-BN model separately."""
  model, variables = model_and_vars
  grouped = build_model(dict(name="wrn", depth=10, width=1, heads=HEADS,
                             bn_group_size=(4 + 2) * 4 // 2), C)  # 2 cores
  rng = np.random.default_rng(1)
  unlabeled, labeled = stream(rng, 4, 4, True), stream(rng, 2, 4, True)
  params, bs = variables["params"], variables["batch_stats"]
  got, *_ = objectives.get("s4l_rotation").loss_fn(
      params, bs, {"unlabeled": unlabeled, "labeled": labeled}, None, model=grouped,
      loss_config=cfg().loss, aux={})
  per_core = []
  for g in range(2):
    u = {k: v[2 * g:2 * g + 2] for k, v in unlabeled.items()}
    l = {k: v[g:g + 1] for k, v in labeled.items()}
    images, _, _ = objective_lib.rotation_inputs([u, l])
    per_core.append(forward(model, variables, list(images)))
  rot = np.concatenate([o["rotations"][:8] for o in per_core]
                       + [o["rotations"][8:] for o in per_core])
  cls = np.concatenate([o["classes"][8:] for o in per_core])
  rot_labels = np.concatenate([unlabeled["rotation"].reshape(-1),
                               labeled["rotation"].reshape(-1)])
  want = (np_xent(cls, np.repeat(labeled["label"], 4))
          + (np_xent(rot[:16], rot_labels[:16]) + np_xent(rot[16:], rot_labels[16:])) / 2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  default, *_ = objectives.get("s4l_rotation").loss_fn(
      params, bs, {"unlabeled": unlabeled, "labeled": labeled}, None, model=model,
      loss_config=cfg().loss, aux={})
  assert abs(float(default) - want) > 1e-4  # global BN over both cores differs
