"""VAT, VAT+EntMin and MOAM step 1 objectives: loss bookkeeping, BN, configs, short runs."""
import glob
import json
import os
import struct

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2

from s4l_jax import budget, losses, objective_lib, objectives, runner, vat
from s4l_jax.models import build_model
from s4l_jax.objectives import moam_step1
from s4l_jax.objectives import vat as vat_objective
from testing_utils import load_config, tiny

# The released rows "VAT 10%" and "VAT+EntMin 10%" (`s4l:config/vat.sh`, `vat_entmin.sh`).
PAPER_ROWS = {
    "vat": dict(B_l=256, B_u=256, lr=0.03, lr_scale=0, wd=1e-3, warmup=5,
                decays=(140, 160, 180), end=200, eps=40.0, w_vat=0.5, ent=0.0, xi=1e-6,
                iters=1, on_labeled=True),
    "vat_entmin": dict(B_l=256, B_u=256, lr=0.03, lr_scale=0, wd=1e-3, warmup=5,
                       decays=(140, 160, 180), end=200, eps=40.0, w_vat=0.5, ent=1.0,
                       xi=1e-6, iters=1, on_labeled=True),
}
RNG = jax.random.PRNGKey(7)


def vat_config(name="vat_entmin", **kw):
  c = tiny(load_config(name, "dataset=digits"), **kw)
  c.eval_every_steps = 0
  return c


def moam_config(**kw):
  c = vat_config(**kw)
  c.objective = "moam_step1"
  c.input.labeled.view = c.input.unlabeled.view = "rotate4"
  c.model.heads = dict(classes=-1, rotations=4)
  c.loss = ml_collections.ConfigDict(dict(
      rot_weight=0.1, sup_weight=0.2, vat_weight=0.7, entmin_weight=0.05, vat_eps=2.0,
      vat_xi=1e-6, vat_num_iters=1, vat_kl_direction="perturbed_clean"))
  return c


def init(config):
  model = build_model(config.model, 10)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)), train=False)
  return model, variables["params"], variables["batch_stats"]


def image_batch(seed, b=16, views=()):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(-1, 1, (b, *views, 8, 8, 3)), jnp.float32)


def vat_batch():
  labels = jnp.asarray(np.random.default_rng(2).integers(0, 10, 16), jnp.int32)
  return {"labeled": {"image": image_batch(0), "label": labels},
          "unlabeled": {"image": image_batch(1), "label": -jnp.ones(16, jnp.int32)}}


def vat_and_recomputation(on_labeled, direction, grads=True, normalization="exact_eps"):
  """Objective vs. an independent recomputation from `losses.*` and `vat.vat_loss` on logits
  of a separate `model.apply`: each (loss, (batch_stats, metrics)), plus grads if `grads`."""
  config = vat_config()
  config.loss.update(dict(vat_apply_to_labeled=on_labeled, vat_kl_direction=direction,
                          vat_weight=0.7, entmin_weight=0.3, vat_eps=2.0,
                          vat_normalization=normalization))
  model, params, bs = init(config)
  batch = vat_batch()
  x_u, x_l, y = batch["unlabeled"]["image"], batch["labeled"]["image"], batch["labeled"]["label"]

  def expected_fn(p):
    apply_fn = lambda x: model.apply({"params": p, "batch_stats": bs}, x, train=True,
                                     mutable=["batch_stats"])
    out, new = apply_fn(jnp.concatenate([x_u, x_l]))
    logits = out["classes"]
    sup = losses.softmax_xent(logits[16:], y)
    x_v = jnp.concatenate([x_u, x_l]) if on_labeled else x_u
    z_v = logits if on_labeled else logits[:16]
    l_vat = vat.vat_loss(lambda x: apply_fn(x)[0]["classes"], x_v, z_v, RNG, eps=2.0,
                         xi=1e-6, num_iters=1, kl_direction=direction,
                         normalization=normalization)
    ent = losses.entropy(z_v)
    metrics = dict(sup_loss=sup, vat_loss=l_vat, entmin_loss=ent)
    return sup + 0.7 * l_vat + 0.3 * ent, (new["batch_stats"], metrics)

  def objective_fn(p):
    out = vat_objective.loss_fn(p, bs, batch, RNG, model=model, loss_config=config.loss, aux={})
    return out.loss, (out.batch_stats, out.metrics)

  wrap = (lambda f: jax.value_and_grad(f, has_aux=True)) if grads else (lambda f: f)
  return jax.jit(wrap(objective_fn))(params), jax.jit(wrap(expected_fn))(params)


@pytest.fixture(scope="module")
def vat_outputs():
  return vat_and_recomputation(True, "perturbed_clean")


@pytest.mark.slow
def test_vat_loss_and_grads_match_recomputation(vat_outputs):
  ((loss, (_, metrics)), grads), ((want, (_, want_metrics)), want_grads) = vat_outputs
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  for key, value in want_metrics.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)
    assert value > 0
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalization", ["exact_eps", "released"])
@pytest.mark.slow
def test_vat_unlabeled_only_and_reverse_kl_match_recomputation(normalization):
  (loss, (_, metrics)), (want, (_, want_metrics)) = vat_and_recomputation(
      False, "clean_perturbed", grads=False, normalization=normalization)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  for key, value in want_metrics.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)


@pytest.mark.slow
def test_vat_batch_stats_come_from_the_clean_pass_only(vat_outputs):
  ((_, (new_bs, _)), _), ((_, (clean_bs, _)), _) = vat_outputs
  config = vat_config()
  model, params, bs = init(config)
  batch = vat_batch()
  x = jnp.concatenate([batch["unlabeled"]["image"], batch["labeled"]["image"]])
  _, noisy = jax.jit(lambda x: model.apply({"params": params, "batch_stats": bs}, x, train=True,
                                           mutable=["batch_stats"]))(x + 0.3 * image_batch(5, 32))
  for got, want, old, other in zip(*map(jax.tree.leaves, (new_bs, clean_bs, bs,
                                                           noisy["batch_stats"]))):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(want, old) and not np.allclose(want, other)


@pytest.mark.parametrize("xi", [1e-6, 1.0])
@pytest.mark.slow
def test_vat_perturbation_has_norm_eps(xi):
  config = vat_config()
  model, params, bs = init(config)
  x = image_batch(3, 16)
  apply_fn = objective_lib.perturbed_apply_fn(model, params, bs)
  r = vat.vat_perturbation(apply_fn, x, apply_fn(x), RNG, eps=config.loss.vat_eps, xi=xi,
                           num_iters=config.loss.vat_num_iters)
  norms = np.sqrt(np.sum(np.square(r), axis=(1, 2, 3)))
  np.testing.assert_allclose(norms, config.loss.vat_eps, rtol=1e-5)


@pytest.mark.slow
def test_moam_step1_bookkeeping():
  config = moam_config()
  model, params, bs = init(config)
  rng = np.random.default_rng(4)
  b_u, b_l = 8, 8
  # Rotation labels are a random permutation per image so that misplaced rows show.
  rot_u = jnp.asarray(np.stack([rng.permutation(4) for _ in range(b_u)]), jnp.int32)
  rot_l = jnp.asarray(np.stack([rng.permutation(4) for _ in range(b_l)]), jnp.int32)
  y = jnp.asarray(rng.permutation(10)[:b_l], jnp.int32)
  u, l = image_batch(6, b_u, (4,)), image_batch(7, b_l, (4,))
  batch = {"unlabeled": {"image": u, "rotation": rot_u, "label": -jnp.ones(b_u, jnp.int32)},
           "labeled": {"image": l, "rotation": rot_l, "label": y}}

  rows = [u[i, r] for i in range(b_u) for r in range(4)] + [
      l[i, r] for i in range(b_l) for r in range(4)]
  rot_labels = jnp.asarray([int(rot_u[i, r]) for i in range(b_u) for r in range(4)] +
                           [int(rot_l[i, r]) for i in range(b_l) for r in range(4)])
  cls_labels = jnp.asarray([int(y[i]) for i in range(b_l) for _ in range(4)])
  apply_fn = lambda x: model.apply({"params": params, "batch_stats": bs}, x, train=True,
                                   mutable=["batch_stats"])[0]
  out = apply_fn(jnp.stack(rows))
  n = 4 * b_u
  want = dict(
      rot_loss=0.5 * losses.softmax_xent(out["rotations"][:n], rot_labels[:n])
      + 0.5 * losses.softmax_xent(out["rotations"][n:], rot_labels[n:]),
      sup_loss=losses.softmax_xent(out["classes"][n:], cls_labels),
      vat_loss=vat.vat_loss(lambda x: apply_fn(x)["classes"], jnp.stack(rows[:n]),
                            out["classes"][:n], RNG, eps=2.0, xi=1e-6, num_iters=1),
      entmin_loss=losses.entropy(out["classes"][:n]))

  loss, _, metrics, _ = moam_step1.loss_fn(
      params, bs, batch, RNG, model=model,
      loss_config=objectives.loss_config(moam_step1, config.loss), aux={})
  for key, value in want.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)
  weights = dict(rot_loss=0.1, sup_loss=0.2, vat_loss=0.7, entmin_loss=0.05)
  np.testing.assert_allclose(loss, sum(w * want[k] for k, w in weights.items()), rtol=1e-6)
  # Without rot_weight: the declared 0.4 (= 1 - the default sup and vat weights 0.3 + 0.3,
  # the S4L code's rule).
  del config.loss["rot_weight"]
  loss, *_ = moam_step1.loss_fn(params, bs, batch, RNG, model=model,
                                loss_config=objectives.loss_config(moam_step1, config.loss),
                                aux={})
  weights["rot_loss"] = 0.4
  np.testing.assert_allclose(loss, sum(w * want[k] for k, w in weights.items()), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_configs_match_paper_rows(name):
  c = load_config(name, "dataset=imagenet2012,labels=10pct")
  got = dict(B_l=c.input.labeled.batch_size, B_u=c.input.unlabeled.batch_size, lr=c.lr.base,
             lr_scale=c.lr.scale_batch_size, wd=c.optimizer.weight_decay,
             warmup=c.lr.warmup_epochs, decays=tuple(c.lr.decay_epochs), end=c.total_epochs,
             eps=c.loss.vat_eps, w_vat=c.loss.vat_weight, ent=c.loss.entmin_weight,
             xi=c.loss.vat_xi, iters=c.loss.vat_num_iters, on_labeled=c.loss.vat_apply_to_labeled)
  assert got == PAPER_ROWS[name]
  assert c.objective == "vat" and c.input.unlabeled.view == "train"
  assert c.loss.vat_kl_direction == "perturbed_clean"
  assert c.loss.vat_normalization == "exact_eps"  # `released`: the tf.nn.l2_normalize form
  assert budget.base_learning_rate(c) == 0.03
  assert budget.total_steps(c, 128_000, 1_281_167) == 100_000
  assert c.model.name == "resnet50v2" and c.model.filters_factor == 4
  c1 = load_config(name, "labels=1pct")
  assert (tuple(c1.lr.decay_epochs), c1.total_epochs) == ((700, 800, 900), 1000)
  digits = load_config(name, "dataset=digits")  # same RMS per value as eps=40 at 224x224x3
  assert digits.loss.vat_eps == pytest.approx(40 * np.sqrt(16 * 16 * 3 / 150_528))
  assert digits.input.unlabeled.batch_size == digits.input.labeled.batch_size


def logged_losses(workdir):
  """The per-step training "loss" scalars of a run, read from its TensorBoard event file."""
  path, = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  out = {}
  with open(path, "rb") as f:  # TFRecord: u64 length, u32 crc, payload, u32 crc.
    while header := f.read(12):
      event = event_pb2.Event.FromString(f.read(struct.unpack("<Q", header[:8])[0]))
      f.read(4)
      out.update({event.step: v.simple_value for v in event.summary.value if v.tag == "loss"})
  return np.array([out[k] for k in sorted(out)])


def test_vat_config_is_vat_entmin_without_entmin():
  """So the vat_entmin run below also covers the vat config."""
  vat_cfg, entmin_cfg = (vat_config(n).to_dict() for n in ("vat", "vat_entmin"))
  assert vat_cfg["loss"].pop("entmin_weight") == 0 and entmin_cfg["loss"].pop("entmin_weight")
  assert vat_cfg == entmin_cfg


@pytest.mark.parametrize("name", ["vat_entmin", "moam_step1"])
@pytest.mark.slow
def test_short_training_lowers_the_loss(name, tmp_path):
  """12 steps on the same 16 labeled digits (labels=16, batch 16) must lower the loss."""
  config = moam_config(steps=12) if name == "moam_step1" else vat_config(name, steps=12)
  config.labels, config.checkpoint_every_steps = "16", 100
  results = runner.run(config, str(tmp_path))
  with open(os.path.join(tmp_path, "results.json")) as f:
    assert json.load(f)["method"] == config.objective
  assert results["steps"] == 12 and np.isfinite(results["top1"])
  loss = logged_losses(str(tmp_path))
  assert len(loss) == 12 and np.all(np.isfinite(loss))
  assert loss[-3:].mean() < loss[:3].mean(), loss
