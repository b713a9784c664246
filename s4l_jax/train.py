"""The training loop shared by every method: `run(config, workdir)`.

jit over a 1-D `data` mesh (batch sharded, state replicated and donated), views computed on
device, the objective named by `config.objective`, Orbax checkpoints (re-running resumes),
metrics (TensorBoard + log) with images/s and ETA, the evaluators of `config.evals`
(periodically on validation, at the end on every split), export, results.json.
"""
import functools
import json
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from s4l_jax import checkpointing, config_lib, distributed, evaluate, export, logs, objectives
from s4l_jax import metrics as metrics_lib, optim, train_state
from s4l_jax.data import pipeline as pipeline_lib
from s4l_jax.data import views
from s4l_jax.models import build_model


def ema_decay(config, steps_per_epoch: int) -> float:
  """Polyak decay with a half-life of `ema_halflife_epochs` (MOAM: 0.5**(1/steps_per_epoch))."""
  if config.ema_halflife_epochs <= 0:
    return 0.0
  return 0.5 ** (1.0 / (config.ema_halflife_epochs * steps_per_epoch))


def make_loss_fn(model, objective, config, views_on_device: bool = True):
  """Returns `loss_fn(params, batch_stats, raw_batch, rng) -> (loss, (batch_stats, metrics))`.

  With `views_on_device`, raw uint8 images are turned into the configured views inside the
  step; otherwise the batch holds uint8 crops from tf.data and the step only finishes them
  (`views.make_finish_fn`: rotations, flips, HSV noise, scaling). Then the objective's loss.
  """
  size, names = config.input.image_size, ("labeled", "unlabeled")
  if views_on_device:
    fns = {name: views.make_view_fn(config.input[name].view, image_size=size,
                                    crop=config.input.crop) for name in names}
    view_fns = {name: lambda rng, raw, f=f: f(rng, raw["image"]) for name, f in fns.items()}
  else:
    view_fns = {name: views.make_finish_fn(config.input[name].view, size) for name in names}
  objective_loss = functools.partial(objective.loss_fn, model=model, config=config)

  def loss_fn(params, batch_stats, raw, rng):
    rngs = jax.random.split(rng, 3)
    batch = {name: {**raw[name], **view_fns[name](r, raw[name])}
             for name, r in zip(names, rngs) if name in raw}
    return objective_loss(params, batch_stats, batch, rngs[2])
  return loss_fn


def make_train_step(model, objective, tx, config, decay: float, views_on_device: bool = True):
  """Returns `step(state, raw_batch) -> (state, metrics)` (to be jitted); see make_loss_fn."""
  loss_fn = make_loss_fn(model, objective, config, views_on_device)
  base_rng = jax.random.PRNGKey(config.seed)

  def step(state, raw):
    rng = jax.random.fold_in(base_rng, state.step)
    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, raw, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    if decay:  # zero-debiased EMA (TF ExponentialMovingAverage(zero_debias=True))
      t = (state.step + 1).astype(jnp.float32)
      w = (1.0 - decay) / (1.0 - decay ** t)
      ema_params = jax.tree.map(lambda e, p: (1.0 - w) * e + w * p, ema_params, params)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                   param_norm=optax.tree.norm(params),
                   batch_stats_norm=(optax.tree.norm(batch_stats) if jax.tree.leaves(batch_stats)
                                     else jnp.zeros((), jnp.float32)))
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state, ema_params=ema_params), metrics
  return step


def init_variables(model, config, image_shape, rng):
  """Fresh variables, overwritten by the `init_from` export wherever path and shape match."""
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  variables = jax.device_get(model.init(rng, dummy, train=False))
  if not config.init_from:
    return variables
  loaded = export.load_variables(config.init_from)
  flat_loaded = dict(jax.tree_util.tree_flatten_with_path(loaded)[0])
  taken = []

  def pick(path, fresh):
    old = flat_loaded.get(path)
    if old is not None and old.shape == fresh.shape:
      taken.append(path)
      return old.astype(fresh.dtype)
    return fresh
  variables = jax.tree_util.tree_map_with_path(pick, variables)
  logging.info("Initialised %d of %d arrays from %s", len(taken),
               len(jax.tree.leaves(variables)), config.init_from)
  return variables


class _Preemption:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks: save, then exit cleanly.

  After the first signal its default action is back, so a second Ctrl-C stops at once.
  `restore()` reinstates the handlers that were there before.
  """
  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal_name = None
    self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  @property
  def requested(self) -> bool:
    return self.signal_name is not None

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    signal.signal(signum, signal.SIG_DFL)
    logging.warning("%s: saving a checkpoint after this step (again to stop at once)",
                    self.signal_name)

  def restore(self):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def check_finite(metrics, step: int, last_saved):
  # param_norm, batch_stats_norm: the state about to be saved (BatchNorm moving statistics too)
  for key in ("loss", "grad_norm", "param_norm", "batch_stats_norm"):
    if key in metrics and not np.isfinite(metrics[key]):
      raise FloatingPointError(
          f"{key} is {metrics[key]} at step {step}: stopping; no checkpoint was written for it "
          f"(last good checkpoint: step {last_saved}). Lower the learning rate or check the data.")


def run(config, workdir: str, stop_after: int | None = None) -> dict | None:
  """Trains, evaluates, exports; returns the results dict also written to results.json.

  `stop_after=N` saves at step N and returns None, as a preemption would (for tests).
  """
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  mesh = distributed.make_mesh()
  data = pipeline_lib.make_pipeline(config, jax.process_index(), jax.process_count())
  spe = config_lib.steps_per_epoch(data.num_labeled, config.input.labeled.batch_size)
  num_steps = config_lib.total_steps(config, data.num_labeled)
  objective = objectives.get(config.objective)
  model = build_model(config.model, data.num_classes)
  logging.info("%s", logs.summary(config, num_labeled=data.num_labeled,
                                  num_classes=data.num_classes, num_steps=num_steps,
                                  images_per_step=data.images_per_step,
                                  devices=jax.device_count(), workdir=workdir))

  variables = init_variables(model, config, data.image_shape, jax.random.PRNGKey(config.seed))
  schedule = optim.make_schedule(config.lr, config_lib.base_learning_rate(config), spe, num_steps)
  tx = optim.make_optimizer(config.optimizer, schedule, variables["params"], config.trainable)
  decay = ema_decay(config, spe)
  repl = distributed.replicated(mesh)
  state = jax.device_put(train_state.create(variables, tx, use_ema=bool(decay)), repl)

  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    config.checkpoint_every_steps, config.keep_checkpoints)
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(state, repl))
  if restored is not None:
    state = restored
    logging.info("Resumed from step %d in %s", int(state.step), workdir)
  first_step = int(state.step)
  if first_step >= num_steps and _finished(workdir):
    ckpt.close()
    logging.info("Already finished: %s holds the results of all %d steps", workdir, num_steps)
    with open(os.path.join(workdir, "results.json")) as f:
      return json.load(f)

  train_step = jax.jit(make_train_step(model, objective, tx, config, decay,
                                       data.views_on_device),
                       in_shardings=(repl, distributed.data_sharding(mesh)),
                       out_shardings=(repl, repl), donate_argnums=0)
  writer = metrics_lib.MetricWriter(workdir, write_files=jax.process_index() == 0)
  if first_step == 0:
    writer.write_text(0, "config", config.to_json_best_effort(indent=2))
  preemption = _Preemption()
  evaluators = _make_evaluators(model, config, data, mesh)

  last_saved, t_log, step_log = ckpt.latest_step(), time.time(), first_step
  # Images/s and ETA: training steps only, from the end of the first (compiling) step, not
  # counting evals, checkpoint saves and the writing of metrics; summed for results.json.
  timed_steps, timed_s = 0, 0.0
  for step in range(first_step + 1, num_steps + 1):
    batch = distributed.to_global(data.train_batch(step - 1), mesh)
    state, metrics = train_step(state, batch)
    is_last = step == num_steps
    interrupted = preemption.requested or step == stop_after
    save_now = ckpt.should_save(step) or is_last or interrupted
    log_now = step % config.log_every_steps == 0 or save_now
    if step == first_step + 1:
      jax.block_until_ready(metrics)
      first_step_s, t_log, step_log = time.time() - t_log, time.time(), step
      if not log_now:
        logging.info("first step (compiling) took %.1fs; progress every %d steps from here",
                     first_step_s, config.log_every_steps)
    if log_now:
      metrics = distributed.to_host(metrics)
      try:
        check_finite(metrics, step, last_saved)
      except FloatingPointError:
        ckpt.close()  # finish the async save of the last good checkpoint before stopping
        preemption.restore()
        raise
      now = time.time()
      metrics.update(lr=float(schedule(step - 1)))
      if step > step_log:
        rate = (step - step_log) / max(now - t_log, 1e-9)
        timed_steps, timed_s = timed_steps + step - step_log, timed_s + now - t_log
        metrics.update(steps_per_s=rate, images_per_s=rate * data.images_per_step)
        speed = (f"{metrics['images_per_s']:.1f} img/s  "
                 f"ETA {_format_eta((num_steps - step) / max(rate, 1e-9))}")
      else:  # only the first step so far: its time is mostly compilation
        speed = f"first step {first_step_s:.1f}s (compiling)  ETA ?"
      writer.write_scalars(step, metrics)
      logging.info("step %d/%d loss %.4f  %s", step, num_steps, metrics["loss"], speed,
                   extra={logs.PROGRESS: True})
      t_log, step_log = time.time(), step  # the next interval starts after this one's writing
    if config.eval_every_steps and step % config.eval_every_steps == 0 and not is_last:
      t_pause = time.time()
      for name, (split, evaluate_fn) in evaluators.items():
        if split == "validation":  # model selection never looks at the test split
          writer.write_eval(name, step, num_steps, evaluate_fn(state))
      t_log += time.time() - t_pause
    if save_now:
      t_pause = time.time()
      ckpt.save(step, state, force=True)
      last_saved = step
      t_log += time.time() - t_pause  # the blocking part of the (async) save
    if interrupted and not is_last:
      ckpt.close()
      preemption.restore()
      if preemption.requested:
        raise SystemExit(f"{preemption.signal_name}: saved step {step} to {workdir}/checkpoints;"
                         " re-run the same command to resume")
      return None
  ckpt.close()
  preemption.restore()  # Ctrl-C during the final eval and export stops as usual

  final = {name: evaluate_fn(state) for name, (_, evaluate_fn) in evaluators.items()}
  for name, accs in final.items():
    writer.write_eval(name, num_steps, num_steps, accs)
  writer.close()
  wall = time.time() - start
  use_ema = bool(decay)
  # The first evaluator of each split; EMA weights when they are the ones exported.
  first = {}
  for name, (split, _) in evaluators.items():
    first.setdefault(split, final[name])
  pick = lambda split, k: first[split][("ema_" if use_ema else "") + k] if split in first else None
  results = dict(
      method=config.objective, dataset=config.dataset, labels=config.labels,
      num_labeled=data.num_labeled, num_validation=int(data.validation_indices.size),
      steps=num_steps, top1=pick("test", "top1"), top5=pick("test", "top5"),
      validation_top1=pick("validation", "top1"), validation_top5=pick("validation", "top5"),
      wall_s=wall, images_per_s=(timed_steps * data.images_per_step / timed_s if timed_s > 0
                                 else (num_steps - first_step) * data.images_per_step
                                 / max(wall, 1e-9)),
      resumed_from_step=first_step, evals=final)
  if jax.process_index() == 0:
    export.write_export(
        os.path.join(workdir, "export"), model, state.eval_variables(use_ema),
        image_size=config.input.image_size, channels=data.image_shape[-1],
        class_names=data.class_names,
        meta=dict(method=config.objective, dataset=config.dataset, labels=config.labels,
                  step=num_steps, weights="ema" if use_ema else "raw", top1=results["top1"]))
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


def _finished(workdir: str) -> bool:
  """results.json and a complete export exist (the end of `run` writes both)."""
  return (os.path.exists(os.path.join(workdir, "results.json"))
          and os.path.exists(os.path.join(workdir, "export", export.DESCRIPTION_FILE)))


def _make_evaluators(model, config, data, mesh) -> dict:
  """{name: (split, `state -> {top1, top5, [ema_top1, ...], [rot_avg_top1, ...]}`)} for
  `config.evals`, each over its whole split; those on `validation` are left out when the
  pipeline holds no validation set (input.validation=0).

  Raw and EMA weights are scored in the same pass over the data.
  """
  eval_steps = {}  # rotation_average -> jitted step, shared by the evaluators

  def make(split, eval_step):
    def run_eval(state):
      prefixes = {"": False, "ema_": True} if state.ema_params else {"": False}

      def step(batch):
        sums = {}
        for prefix, use_ema in prefixes.items():
          out = eval_step(state.eval_variables(use_ema), batch)
          sums.update({prefix + k: v for k, v in out.items() if k != "count" or not prefix})
        return sums

      batches = (distributed.to_global(b, mesh)
                 for b in data.eval_batches(config.input.eval_batch_size, split))
      accs = evaluate.accumulate(step, batches)
      accs.pop("count")
      return accs
    return run_eval

  evaluators = {}
  for name, spec in config.evals.items():
    if spec.split == "validation" and not data.validation_indices.size:
      continue
    if spec.rotation_average not in eval_steps:
      eval_steps[spec.rotation_average] = jax.jit(
          evaluate.make_eval_step(model, spec.rotation_average))
    evaluators[name] = (spec.split, make(spec.split, eval_steps[spec.rotation_average]))
  return evaluators


def _format_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
