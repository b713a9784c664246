"""The objective protocol: REQUIRES checked before any work, aux filled by the train step."""
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from s4l_jax import config_lib, objectives, optim, train, train_state
from s4l_jax.models import build_model
from testing_utils import load_config, tiny

OBJECTIVES = sorted(f[:-3] for f in os.listdir(os.path.dirname(objectives.__file__))
                    if f.endswith(".py") and f != "__init__.py")


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_declares_its_requirements(name):
  needs = objectives.requirements(objectives.get(name), ml_collections.ConfigDict())
  assert isinstance(needs, objectives.Requirements)
  # Every config has both streams; an objective reads the labeled one unless it is a pure
  # per-image pretext loss on the unlabeled stream (PIRL: each image's memory-bank row;
  # ClusterFit: each image's cluster).
  assert set(needs.streams) <= {"labeled", "unlabeled"}
  assert "labeled" in needs.streams or name in ("pirl", "clusterfit")


def _shipped_runs():
  """(config file, run config) for every config file's runs (a pipeline's stages), on digits."""
  for name in config_lib.config_names():
    export_arg = {"finetune": ",pretrained=/x", "linear_eval": ",pretrained=/x",
                  "pseudo_label": ",teacher=/x"}.get(name, "")
    config = load_config(name, "dataset=digits" + export_arg)
    for run in (config.stages.values() if "stages" in config else [config]):
      yield name, run


def test_every_loss_key_of_every_config_is_declared_and_allowed():
  """Every shipped run's `loss` holds its objective's declared keys (defaults filled by
  `config_lib.set_objective`), each allowed; numbers have a Range."""
  checked = 0
  for name, run in _shipped_runs():
    keys = objectives.get(run.objective).LOSS_KEYS
    assert set(run.loss) <= set(keys), (name, run.objective, sorted(set(run.loss) - set(keys)))
    for key, spec in keys.items():
      if spec.default is not objectives.OPTIONAL:
        assert key in run.loss, (name, run.objective, key)
      if key in run.loss:
        spec.check(key, run.loss[key], run.objective)
        value = run.loss[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
          assert isinstance(spec.allowed, objectives.Range), (run.objective, key)
        checked += 1
  assert checked >= 40


@pytest.mark.parametrize("name", OBJECTIVES)
def test_declared_defaults_are_allowed_and_fill_the_loss_config(name):
  module = objectives.get(name)
  defaults = objectives.loss_defaults(name)
  for key, value in defaults.items():
    module.LOSS_KEYS[key].check(key, value, name)
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=8)
  config_lib.set_objective(c, name)
  assert (c.objective, c.loss.to_dict()) == (name, defaults)
  assert objectives.loss_config(module, {}).to_dict() == defaults


def test_loss_config_overrides_the_defaults():
  module = objectives.get("fixmatch")
  assert objectives.loss_config(module, {"threshold": 0.5}).to_dict() == {
      "threshold": 0.5, "unlabeled_weight": 1.0}


def test_unknown_and_missing_loss_keys_fail_in_one_line():
  config = _config("fixmatch")
  config.loss.treshold = 0.9
  with pytest.raises(ValueError, match=r"^loss.treshold is not a key of objective fixmatch "
                     r"\(its keys: threshold, unlabeled_weight\)$"):
    objectives.check_config(config)
  config = _config("jigsaw")
  del config.loss["permutations"]
  with pytest.raises(ValueError, match=r"^objective jigsaw needs loss.permutations: set it in "
                     r"the config$"):
    objectives.check_config(config)


def test_choices_are_checked_with_their_type():
  config = _config("vat")
  config.loss.vat_kl_direction = "kl"
  with pytest.raises(ValueError, match=r"^loss.vat_kl_direction='kl' must be one of "
                     r"perturbed_clean, clean_perturbed \(objective vat\)$"):
    objectives.check_config(config)
  switch = objectives.LossKey(False, objectives.BOOL)
  switch.check("s", True, "x")
  with pytest.raises(ValueError, match=r"^loss.s=1 must be one of False, True \(objective x\)$"):
    switch.check("s", 1, "x")  # an int is no bool


@pytest.mark.parametrize("name, arg, key, value, allowed", [
    ("fixmatch", "dataset=digits", "threshold", 1.5, "[0, 1]"),
    ("fixmatch", "dataset=digits", "unlabeled_weight", -1.0, "[0, inf)"),
    ("simclrv2", "dataset=digits", "temperature", -1.0, "(0, inf)"),
    ("simclrv2", "dataset=digits", "temperature", 0.0, "(0, inf)"),
    ("vat", "dataset=digits", "vat_eps", 0.0, "(0, inf)"),
    ("mean_teacher", "dataset=digits", "consistency_rampup", 2.0, "[0, 1]"),
    ("s4l_exemplar", "dataset=digits", "triplet_groups", 0, "[1, inf)"),
])
def test_loss_values_that_cannot_work_fail_before_compiling(name, arg, key, value, allowed):
  config = load_config(name, arg)
  if "stages" in config:
    config = config.stages.pretrain
  config.loss[key] = value
  with pytest.raises(ValueError) as e:
    objectives.check_config(config)
  assert str(e.value) == (f"loss.{key}={value!r} must be in {allowed} "
                          f"(objective {config.objective})")


def test_range_ends_and_types():
  assert 0 in objectives.Range(0) and -1e-9 not in objectives.Range(0)
  assert 0 not in objectives.POSITIVE and 1e-9 in objectives.POSITIVE
  assert 1 in objectives.Range(0, 1) and 1 not in objectives.Range(0, 1, high_open=True)
  assert True not in objectives.Range(0) and "1" not in objectives.Range(0)
  assert str(objectives.Range(0, 1, low_open=True)) == "(0, 1]"


def _config(name="s4l_rotation", arg="dataset=digits"):
  return tiny(load_config(name, arg))


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.input.unlabeled.update(batch_size=0), "needs the unlabeled stream: set "
     "input.unlabeled.batch_size > 0"),
    (lambda c: delattr(c.input, "unlabeled"), r"reads a stream 'unlabeled', which input does not "
     r"declare \(streams: labeled\)"),
    (lambda c: c.input.unlabeled.update(view="train"),
     r"needs input.unlabeled.view making 4 copies per image, got 'train' \(1\)"),
    (lambda c: delattr(c.model.heads, "rotations"), r"reads model heads \['rotations'\]"),
])
def test_missing_requirements_fail_in_one_line(edit, match):
  config = _config()
  objectives.check_config(config)  # the config as shipped provides everything
  edit(config)
  with pytest.raises(ValueError, match=match) as e:
    objectives.check_config(config)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("noise", [{"dropout": 0.1}, {"stochastic_depth": 0.9}])
def test_model_noise_needs_an_objective_that_passes_the_rng(noise):
  config = _config()  # s4l_rotation: apply_train without an rng
  config.model.update(noise)
  with pytest.raises(ValueError, match=r"^objective s4l_rotation gives the model no rng for its "
                     r"noise: set model.dropout=0 and model.stochastic_depth=1, or use "
                     r"supervised$"):
    objectives.check_config(config)
  supervised = _config("supervised")
  supervised.model.update(noise)
  objectives.check_config(supervised)


def test_aux_requirements_are_checked():
  fake = types.SimpleNamespace(REQUIRES=objectives.Requirements(aux=("ema_params", "teacher")),
                               LOSS_KEYS={}, loss_fn=None)
  config = _config("supervised")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(objectives, "get", lambda name: fake)
    with pytest.raises(ValueError, match="needs the EMA weights: set ema_halflife_epochs"):
      objectives.check_config(config)
    config.ema_halflife_epochs = 1.0
    with pytest.raises(ValueError, match="needs a frozen teacher: set frozen_teacher"):
      objectives.check_config(config)


def test_state_needs_init_state():
  fake = types.SimpleNamespace(REQUIRES=objectives.Requirements(aux=("state",)), LOSS_KEYS={},
                               loss_fn=None)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(objectives, "get", lambda name: fake)
    with pytest.raises(ValueError, match=r"^objective supervised reads aux\['state'\] but "
                       "defines no init_state$"):
      objectives.check_config(_config("supervised"))


def test_unknown_aux_is_a_programming_error():
  with pytest.raises(ValueError, match="unknown entries"):
    objectives.Requirements(aux=("teachers",))


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


@pytest.mark.slow
def test_train_step_fills_aux_with_step_progress_ema_and_a_frozen_teacher():
  """A probe objective reports what it received; the teacher is another, frozen network."""
  config = _config("supervised", "dataset=digits,labels=10pct")
  config.input.labeled.view = "eval"  # deterministic: the images are the raw ones in [-1, 1]
  model, teacher_model = build_model(config.model, 10), build_model(config.model, 10)
  init = lambda m, seed: jax.device_get(m.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 3)),
                                                train=False))
  variables, teacher_variables = init(model, 0), init(teacher_model, 1)

  def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
    del rng, loss_config
    x = batch["labeled"]["image"]
    student = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    target = aux["teacher"](x)["classes"]
    loss = jnp.mean(jnp.square(student["classes"] - target))
    return objectives.LossOutput(loss, batch_stats, {
        "aux_step": aux["step"], "aux_progress": aux["progress"],
        "ema_norm": _norm(aux["ema_params"]), "teacher_sum": jnp.sum(target)})

  probe = types.SimpleNamespace(loss_fn=loss_fn, LOSS_KEYS={}, REQUIRES=objectives.Requirements(
      aux=("step", "progress", "ema_params", "teacher")))
  tx = optim.make_optimizer(config.optimizer, optim.make_schedule(config.lr, 0.1, 10, 100),
                            variables["params"])
  step = jax.jit(train.make_train_step(model, probe, tx, config, 0.9, teacher_model=teacher_model,
                                       num_steps=4))
  state = train_state.create(variables, tx, use_ema=True)
  images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), np.uint8)
  raw = {"labeled": {"image": images, "label": np.zeros((8,), np.int32)}}
  frozen = {"teacher": teacher_variables}
  expected_teacher = teacher_model.apply(teacher_variables, images / 255.0 * 2 - 1,
                                         train=False)["classes"]
  for expected_step in range(3):
    ema_before = _norm(state.ema_params)
    state, metrics = step(state, raw, frozen)
    assert int(metrics["aux_step"]) == expected_step
    np.testing.assert_allclose(metrics["aux_progress"], expected_step / 4)
    np.testing.assert_allclose(metrics["ema_norm"], ema_before, rtol=1e-6)
    np.testing.assert_allclose(metrics["teacher_sum"], np.sum(expected_teacher), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(frozen["teacher"]), jax.tree.leaves(teacher_variables)):
    np.testing.assert_array_equal(a, b)  # an input of every step, never updated


@pytest.mark.slow
def test_no_gradient_reaches_the_teacher():
  config = _config("supervised", "dataset=digits,labels=10pct")
  model = build_model(config.model, 10)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
                                        train=False))
  probe = types.SimpleNamespace(REQUIRES=objectives.Requirements(aux=("teacher",)), LOSS_KEYS={})

  def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
    del params, rng, loss_config, model
    return objectives.LossOutput(jnp.sum(aux["teacher"](batch["labeled"]["image"])["classes"]),
                                 batch_stats, {})
  probe.loss_fn = loss_fn
  loss = train.make_loss_fn(model, probe, config, teacher_model=model)
  raw = {"labeled": {"image": np.ones((2, 8, 8, 3), np.uint8), "label": np.zeros((2,), np.int32)}}
  grads = jax.grad(lambda frozen: loss(variables["params"], variables["batch_stats"], raw,
                                       jax.random.PRNGKey(0), {"frozen": frozen})[0])(
                                           {"teacher": variables})
  assert all(not np.any(g) for g in jax.tree.leaves(grads))
