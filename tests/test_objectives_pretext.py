"""Jigsaw, relative position and their S4L variants: each loss against a NumPy recomputation
(a linear head on the tiles' concatenated features built from the model's own per-tile
features), BN bookkeeping, and end-to-end runs on digits with a bit-identical resume."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import config_lib, export, objective_lib, objectives, permutations, runner
from s4l_jax.models import build_model
from testing_utils import load_config, sigterm_during_step, tiny

T = 4   # tile side
C = 5   # classes
P = 6   # permutations
TABLE = permutations.maximal_hamming(P)
HEADS = dict(classes=-1, rotations=4, jigsaw=9 * P, relative_position=16)


@pytest.fixture(scope="module")
def model_and_vars():
  model = build_model(dict(name="wrn", depth=10, width=1, heads=HEADS), C)
  init = jax.jit(functools.partial(model.init, train=False))
  return model, jax.device_get(init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))


def forward(model, variables, x):
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  outputs, new = apply(variables, x)
  return jax.tree.map(np.asarray, outputs), new["batch_stats"]


def np_xent(logits, labels):
  logits = logits.astype(np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return -logp[np.arange(len(labels)), labels].mean()


def np_concat_head(features, params, head, slots, order):
  """The linear head on concatenated features, built explicitly: kernel (D, G K) read as G
  blocks (D, K), stacked into (G D, K); biases summed."""
  kernel = np.asarray(params[f"head_{head}"]["kernel"], np.float64)
  bias = np.asarray(params[f"head_{head}"]["bias"], np.float64)
  k = kernel.shape[1] // slots
  stacked = np.concatenate([kernel[:, j * k:(j + 1) * k] for j in range(slots)])
  concat = np.stack([np.concatenate([features[i * slots + t] for t in row])
                     for i, row in enumerate(order)])
  return concat @ stacked + bias.reshape(slots, k).sum(0)


def np_normalize(tiles):
  mean = tiles.mean(axis=(-3, -2, -1), keepdims=True)
  return (tiles - mean) / np.sqrt(tiles.var(axis=(-3, -2, -1), keepdims=True) + 1e-5)


def test_puzzle_logits_is_a_linear_head_on_the_permuted_concatenation():
  rng = np.random.default_rng(0)
  b, g, k, d = 3, 4, 2, 5
  features = rng.normal(size=(b * g, d))
  kernel, bias = rng.normal(size=(d, g * k)), rng.normal(size=(g * k,))
  order = np.stack([rng.permutation(g) for _ in range(b)])
  got = objective_lib.puzzle_logits(jnp.asarray(features @ kernel + bias), jnp.asarray(order))
  want = np_concat_head(features, {"head_h": {"kernel": kernel, "bias": bias}}, "h", g, order)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _batch(rng, b, copies, labels=False):
  out = {"image": rng.uniform(-1, 1, (b, copies, T, T, 3)).astype(np.float32),
         "label": rng.integers(0, C, (b,)).astype(np.int32)}
  if labels:
    position = rng.integers(0, 8, (b,)).astype(np.int32)
    out["position"] = np.stack([position, position], 1)
  return out


def _whole(rng, b):
  return {"image": rng.uniform(-1, 1, (b, 16, 16, 3)).astype(np.float32),
          "label": rng.integers(0, C, (b,)).astype(np.int32)}


def _run(name, model, variables, batch, loss, rng):
  fn = jax.jit(functools.partial(objectives.get(name).loss_fn, model=model, loss_config=loss,
                                 aux={}))
  value, stats, metrics, _ = fn(variables["params"], variables["batch_stats"], batch, rng)
  return float(value), stats, jax.tree.map(float, metrics)


@pytest.mark.parametrize("name", ["jigsaw", "s4l_jigsaw"])
@pytest.mark.slow
def test_jigsaw_losses_match_numpy(model_and_vars, name):
  model, variables = model_and_vars
  rng, key = np.random.default_rng(1), jax.random.PRNGKey(3)
  batch = {"unlabeled": _batch(rng, 4, 9), "labeled": _whole(rng, 2)}
  loss = config_lib.ml_collections.ConfigDict(dict(permutations=TABLE, jigsaw_weight=0.7))
  value, stats, metrics = _run(name, model, variables, batch, loss, key)

  labels = np.asarray(jax.random.randint(key, (4,), 0, P))  # the draw the loss documents
  order = np.asarray(TABLE)[labels]
  tiles = np_normalize(batch["unlabeled"]["image"].astype(np.float64)).reshape(-1, T, T, 3)
  features = forward(model, variables, tiles.astype(np.float32))[0]["pre_logits"]
  logits = np_concat_head(features, variables["params"], "jigsaw", 9, order)
  jig = np_xent(logits, labels)
  np.testing.assert_allclose(metrics["jigsaw_loss"], jig, rtol=1e-4)
  whole, whole_stats = forward(model, variables, batch["labeled"]["image"])
  sup = np_xent(whole["classes"], batch["labeled"]["label"])
  np.testing.assert_allclose(value, jig if name == "jigsaw" else sup + 0.7 * jig, rtol=1e-4)
  # BN's moving averages come from the whole images alone, not from the tiles (float32
  # rounding of two differently fused programs: 1 ulp).
  same = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7)
  jax.tree.map(same, stats, whole_stats)


@pytest.mark.parametrize("name", ["relative_position", "s4l_relative_position"])
@pytest.mark.slow
def test_relative_position_losses_match_numpy(model_and_vars, name):
  model, variables = model_and_vars
  rng = np.random.default_rng(2)
  batch = {"unlabeled": _batch(rng, 4, 2, labels=True), "labeled": _whole(rng, 2)}
  loss = config_lib.ml_collections.ConfigDict(dict(position_weight=0.3))
  value, stats, metrics = _run(name, model, variables, batch, loss, None)

  features = forward(model, variables,
                     batch["unlabeled"]["image"].reshape(-1, T, T, 3))[0]["pre_logits"]
  logits = np_concat_head(features, variables["params"], "relative_position", 2, [[0, 1]] * 4)
  pos = np_xent(logits, batch["unlabeled"]["position"][:, 0])
  np.testing.assert_allclose(metrics["position_loss"], pos, rtol=1e-4)
  whole, whole_stats = forward(model, variables, batch["labeled"]["image"])
  sup = np_xent(whole["classes"], batch["labeled"]["label"])
  np.testing.assert_allclose(value, pos if name == "relative_position" else sup + 0.3 * pos,
                             rtol=1e-4)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7), stats,
               whole_stats)


def test_configs_store_the_permutation_set_and_size_the_heads():
  c = load_config("jigsaw", "dataset=digits,permutations=30")
  assert c.loss.permutations == permutations.maximal_hamming(30)
  assert c.model.heads.jigsaw == 270 and c.input.unlabeled.view == "jigsaw"
  s = load_config("s4l_relative_position", "dataset=digits")
  assert s.model.heads.relative_position == 16 and s.input.unlabeled.view == "relative_position"


@pytest.mark.parametrize("key,value,match", [
    ("model.heads.jigsaw", 90, "must be 900: 9 blocks of P = 100"),
    ("loss.jigsaw_weight", -1.0,
     r"loss.jigsaw_weight=-1.0 must be in \[0, inf\) \(objective s4l_jigsaw\)"),
    ("input.unlabeled.view", "rotate4", "making 9 copies per image"),
])
def test_bad_jigsaw_configs_fail_in_one_line(key, value, match):
  from s4l_jax import validation  # pylint: disable=g-import-not-at-top
  c = load_config("s4l_jigsaw", "dataset=digits")
  section, _, leaf = key.rpartition(".")
  functools.reduce(lambda d, k: d[k], section.split("."), c)[leaf] = value
  with pytest.raises(ValueError, match=match):
    validation.validate(c)


def _digits(name, steps=4, arg=""):
  c = tiny(load_config(name, f"dataset=digits{arg}"), steps=steps, batch=8, image_size=16)
  c.checkpoint_every_steps = 2
  return c


@pytest.mark.slow
def test_relative_position_runs_on_digits_and_exports(tmp_path):
  """(The pretext rows share these views and loss helpers; their losses are tested above.)"""
  results = runner.run(_digits("s4l_relative_position", steps=2), str(tmp_path))
  assert np.isfinite(results["top1"])
  assert export.load_description(str(tmp_path / "export"))["method"] == "s4l_relative_position"


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", [("s4l_jigsaw", ""), ("relative_position", ""),
                                      ("multitask", ",s4l=true")])
def test_digits_run_resumes_bit_identically(tmp_path, name, arg):
  """(multitask with s4l=true: rotation, jigsaw, relative position and the class loss.)"""
  full, resumed = tmp_path / "full", tmp_path / "resumed"
  runner.run(_digits(name, arg=arg), str(full))
  with sigterm_during_step(2):
    with pytest.raises(SystemExit, match="SIGTERM: saved step 2"):
      runner.run(_digits(name, arg=arg), str(resumed))
  assert runner.run(_digits(name, arg=arg), str(resumed))["resumed_from_step"] == 2
  a, b = (export.load_variables(str(d / "export")) for d in (full, resumed))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_multitask_loss_matches_numpy(model_and_vars):
  from s4l_jax.data import views  # pylint: disable=g-import-not-at-top
  model, variables = model_and_vars
  rng, key = np.random.default_rng(4), jax.random.PRNGKey(5)
  batch = {"unlabeled": _whole(rng, 2), "labeled": _whole(rng, 2)}
  loss = config_lib.ml_collections.ConfigDict(dict(
      rotation_weight=0.5, position_weight=0.25, jigsaw_weight=0.0, triplet_weight=0.0,
      class_weight=2.0))
  value, _, metrics = _run("multitask", model, variables, batch, loss, key)

  crops = batch["unlabeled"]["image"]
  rotated = np.stack([np.rot90(c, k, axes=(0, 1)) for c in crops for k in range(4)])
  rot = np_xent(forward(model, variables, rotated)[0]["rotations"], np.tile(np.arange(4), 2))
  pairs = views.make_ops_fn("patch_pair|color_drop")(jax.random.split(key, 3)[2], crops)
  features = forward(model, variables,
                     np.asarray(pairs["image"]).reshape(-1, T, T, 3))[0]["pre_logits"]
  logits = np_concat_head(features, variables["params"], "relative_position", 2, [[0, 1]] * 2)
  pos = np_xent(logits, np.asarray(pairs["position"])[:, 0])
  sup = np_xent(forward(model, variables, batch["labeled"]["image"])[0]["classes"],
                batch["labeled"]["label"])
  np.testing.assert_allclose([metrics["rotation_loss"], metrics["position_loss"]], [rot, pos],
                             rtol=1e-4)
  np.testing.assert_allclose(value, 2.0 * sup + 0.5 * rot + 0.25 * pos, rtol=1e-4)
  assert "jigsaw_loss" not in metrics


def test_multitask_requirements_follow_the_tasks():
  needs = objectives.requirements(objectives.get("multitask"),
                                  load_config("multitask", "dataset=digits,tasks=exemplar+jigsaw").loss)
  assert needs.streams == {"labeled": 1, "unlabeled": 8}
  assert needs.heads == ("classes", "embeddings", "jigsaw")
  s4l = load_config("multitask", "dataset=digits,s4l=true")
  assert s4l.loss.class_weight == 1.0 and s4l.input.unlabeled.view == "train"
  assert set(s4l.model.heads) == {"classes", "rotations", "jigsaw", "relative_position"}
  with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
    load_config("multitask", "tasks=rotation+colour")
