"""The training loop shared by every method: `run(config, workdir)`.

jit over a 1-D `data` mesh (batch sharded, state replicated and donated), views computed on
device, the objective named by `config.objective`, Orbax checkpoints (re-running resumes),
metrics (TensorBoard + log) with images/s and ETA, the evaluators of `config.evals`
(periodically on validation, at the end on every split), export, results.json.
"""
import collections
import dataclasses
import functools
import json
import math
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from s4l_jax import aggregate, budget, checkpointing, distributed, evaluate, events, export
from s4l_jax import evaluators as evaluators_lib, logs, objectives
from s4l_jax import metrics as metrics_lib, optim, storage, train_state, validation
from s4l_jax.data import factory
from s4l_jax.data import streams, views
from s4l_jax import initialization
from s4l_jax.models import build_model


def ema_decay(config, steps_per_epoch: int) -> float:
  """Per-step Polyak decay: `ema_decay` when > 0 (FixMatch: 0.999), else a half-life of
  `ema_halflife_epochs` (MOAM: 0.5**(1/steps_per_epoch)); 0 = off."""
  if config.ema_decay > 0:
    return float(config.ema_decay)
  if config.ema_halflife_epochs <= 0:
    return 0.0
  return 0.5 ** (1.0 / (config.ema_halflife_epochs * steps_per_epoch))


def make_loss_fn(model, objective, config, views_on_device: bool = True, teacher_model=None):
  """Returns `loss_fn(params, batch_stats, raw_batch, rng, aux_state) -> (loss, (batch_stats,
  metrics, objective_state))` (the objective's new state, or `aux_state["state"]` unchanged
  when it keeps none).

  With `views_on_device`, raw uint8 images are turned into the configured views inside the
  step; otherwise the batch holds uint8 crops from tf.data and the step applies the rest of
  the view (`views.make_view_fn(..., host_cropped=True)`). Then the objective's loss,
  with the `aux` its `REQUIRES.aux` asks for, built from `aux_state` = {"step", "progress",
  "ema_params", "state", "frozen"} (see `s4l_jax/objectives/__init__.py`).
  """
  size, names = config.input.image_size, tuple(streams.declared(config.input))
  view_fns = {name: views.make_view_fn(config.input[name].view, image_size=size,
                                       crop=config.input.crop,
                                       host_cropped=not views_on_device) for name in names}
  objective_loss = functools.partial(objective.loss_fn, model=model,
                                     loss_config=objectives.loss_config(objective, config.loss))
  wanted = objectives.requirements(objective, config.loss).aux

  def make_aux(aux_state):
    aux = {k: aux_state[k] for k in ("step", "progress", "ema_params", "state") if k in wanted}
    if "teacher" in wanted:
      variables = aux_state["frozen"]["teacher"]
      aux["teacher"] = lambda x: jax.lax.stop_gradient(
          teacher_model.apply(variables, x, train=False))
    return aux

  def loss_fn(params, batch_stats, raw, rng, aux_state):
    rngs = jax.random.split(rng, len(names) + 1)  # one per declared stream, the loss's last
    batch = {name: {**raw[name], **view_fns[name](r, raw[name])}
             for name, r in zip(names, rngs) if name in raw}
    out = objective_loss(params, batch_stats, batch, rngs[-1], aux=make_aux(aux_state))
    state = aux_state.get("state", {}) if out.state is None else out.state
    return out.loss, (out.batch_stats, out.metrics, state)
  return loss_fn


def make_train_step(model, objective, tx, config, decay: float, views_on_device: bool = True,
                    teacher_model=None, num_steps: int = 1):
  """Returns `step(state, raw_batch, frozen) -> (state, metrics)` (to be jitted).

  `frozen`: variables of frozen networks (`{"teacher": ...}` with `config.frozen_teacher`,
  else `{}`), passed in each call, never updated; `num_steps`: the run's length (for
  `aux["progress"]`); see make_loss_fn.
  """
  loss_fn = make_loss_fn(model, objective, config, views_on_device, teacher_model)
  base_rng = jax.random.PRNGKey(config.seed)

  def step(state, raw, frozen):
    rng = jax.random.fold_in(base_rng, state.step)
    aux_state = dict(step=state.step, progress=state.step.astype(jnp.float32) / num_steps,
                     ema_params=state.ema_params, state=state.objective_state, frozen=frozen)
    (loss, (batch_stats, metrics, objective_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.batch_stats, raw, rng, aux_state)
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
                         opt_state=opt_state, ema_params=ema_params,
                         objective_state=objective_state), metrics
  return step


class _Preemption:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks: save, then exit cleanly.

  After the first signal its default action is back, so a second Ctrl-C stops at once.
  `restore()` reinstates the handlers that were there before. With several processes, a
  signal to any of them stops all at the same step: they agree on it every step (one integer
  gathered over the processes).
  """
  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal_name = None
    self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def requested_at(self, step: int) -> bool:
    """Whether to save and stop after `step` (checked once per step, by every process)."""
    del step  # every process asks at every step, so they agree on the step
    if jax.process_count() == 1:
      return self.signal_name is not None
    received = int(signal.Signals[self.signal_name]) if self.signal_name else 0
    agreed = distributed.max_over_processes(received)
    if agreed and self.signal_name is None:
      self.signal_name = signal.Signals(agreed).name
    return bool(agreed)

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    signal.signal(signum, signal.SIG_DFL)
    logging.warning("%s: saving a checkpoint after this step (again to stop at once)",
                    self.signal_name)

  def restore(self):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


class DivergenceError(FloatingPointError):
  """Training diverged (a non-finite value, or a loss far above its running median)."""


class DivergenceGuard:
  """Stops a diverging run before its state is checkpointed; called with every step's metrics.

  Diverged: `loss`, `grad_norm`, `param_norm` or `batch_stats_norm` (the state about to be
  saved, BatchNorm moving statistics too) is not finite, or |loss| > `factor` x max(|median|,
  1) where the median is over the last `window` steps' losses (from `min_history` of them;
  `factor` 0 = only the finiteness check).
  """
  KEYS = ("loss", "grad_norm", "param_norm", "batch_stats_norm")

  def __init__(self, factor: float, window: int = 100, min_history: int = 5):
    self.factor, self.min_history = float(factor), min_history
    self._losses = collections.deque(maxlen=window)

  def check(self, metrics, step: int, resume_hint: str):
    """Raises DivergenceError (one line, ending with `resume_hint`) if `metrics` diverged."""
    for key in self.KEYS:
      if key in metrics and not np.isfinite(metrics[key]):
        raise DivergenceError(f"{key} is {metrics[key]} at step {step}: stopping before it is "
                              f"checkpointed. {resume_hint}")
    loss = float(metrics["loss"])
    if self.factor and len(self._losses) >= self.min_history:
      median = float(np.median(self._losses))
      if abs(loss) > self.factor * max(abs(median), 1.0):
        raise DivergenceError(
            f"loss {loss:.4g} at step {step} is over {self.factor:g}x its running median "
            f"{median:.4g} (divergence_factor): stopping before it is checkpointed. "
            f"{resume_hint}")
    self._losses.append(loss)


def resume_hint(ckpt) -> str:
  """The two ways out of a diverged run, naming the checkpoint a re-run resumes from."""
  steps = ckpt.all_steps()
  if not steps:
    return ("No checkpoint was written: re-run with a lower --config.lr.base (or another lr "
            "schedule) to start again.")
  return (f"A re-run resumes from the checkpoint at step {steps[-1]} ({ckpt.directory}): "
          "pass a lower --config.lr.base (lr.*, total_steps may change on resume), or "
          f"--config.resume_step=N to go back to an earlier kept one (steps {steps}).")


@dataclasses.dataclass
class _Run:
  """Everything the loop and the finish need, built by `_init`."""
  config: Any
  workdir: str
  mesh: Any
  data: Any
  model: Any
  num_steps: int
  schedule: Any
  use_ema: bool
  ckpt: checkpointing.Checkpointer
  state: train_state.TrainState
  frozen: dict        # replicated variables of frozen networks (`{"teacher": ...}` or {})
  train_step: Any     # jitted `(state, global batch, frozen) -> (state, metrics)`


def run(config, workdir: str) -> dict:
  """Trains, evaluates, exports; returns the results dict also written to results.json.

  Re-running resumes from the newest checkpoint; a finished workdir returns its stored
  results. SIGTERM / SIGINT save the current step and raise SystemExit.
  """
  start = time.time()
  r = _init(config, workdir)
  if int(r.state.step) >= r.num_steps:
    missing = unfinished_parts(workdir)
    if not distributed.agree(not missing):
      logging.warning("%s trained all %d steps but lacks %s: evaluating the final checkpoint "
                      "and writing them again", workdir, r.num_steps, ", ".join(missing))
    else:
      r.ckpt.close()
      logging.info("Already finished: %s holds the results of all %d steps", workdir,
                   r.num_steps)
      return json.loads(storage.read_text(storage.join(workdir, "results.json")))
  first_step = int(r.state.step)
  writer = metrics_lib.MetricWriter(workdir, write_files=jax.process_index() == 0)
  if first_step == 0:
    writer.write_text(0, "config", config.to_json_best_effort(indent=2))
  evaluators = _make_evaluators(r.model, config, r.data, r.mesh)
  kit = evaluators_lib.Evaluators(r.model, config, r.data, r.mesh, workdir)  # `kind` evals
  try:
    state, images_per_s = _train(r, writer, evaluators, kit)
    final = {name: evaluate_fn(state) for name, (_, evaluate_fn) in evaluators.items()}
    for name, accs in final.items():
      writer.write_eval(name, r.num_steps, r.num_steps, accs)
    if kit:
      final.update(kit.run(state.eval_variables(r.use_ema), kit.splits(), writer,
                           r.num_steps, r.num_steps))
  except BaseException:  # preempted, diverged, interrupted: this segment's time is kept
    _record_segment(workdir, time.time() - start)
    raise
  finally:
    writer.close()
  return _finish(r, state, evaluators, final, first_step=first_step, images_per_s=images_per_s,
                 wall_s=time.time() - start)


SEGMENTS_FILE = "wall_segments.json"  # wall seconds of the run's earlier, stopped segments


def _record_segment(workdir: str, seconds: float):
  if distributed.is_writer():
    path = storage.join(workdir, SEGMENTS_FILE)
    earlier = json.loads(storage.read_text(path)) if storage.exists(path) else []
    storage.write_text(path, json.dumps(earlier + [seconds]))


def _init(config, workdir: str) -> _Run:
  """Data, model, optimizer, the state (fresh or restored), frozen networks, the jitted step."""
  storage.makedirs(workdir)
  mesh = distributed.make_mesh()
  data = factory.make_pipeline(config, jax.process_index(), jax.process_count())
  spe = budget.steps_per_epoch(data.num_labeled, config.input.labeled.batch_size)
  num_steps = budget.total_steps(config, data.num_labeled, data.num_unlabeled)
  for warning in validation.batch_warnings(
      config, num_labeled=data.num_labeled,
      num_eval=max(data.num_test, int(data.validation_indices.size))):
    logging.warning("%s", warning)
  objective = objectives.get(config.objective)
  model = build_model(config.model, data.num_classes)
  logging.info("%s", logs.summary(config, num_labeled=data.num_labeled,
                                  num_classes=data.num_classes, num_steps=num_steps,
                                  images_per_step=data.images_per_step,
                                  devices=jax.device_count(), workdir=workdir))

  variables = initialization.init_variables(
      model, data.image_shape, jax.random.PRNGKey(config.seed), init_from=config.init_from,
      init_take=config.init_take)
  schedule = optim.make_schedule(
      config.lr, budget.base_learning_rate(config),
      budget.schedule_steps_per_epoch(config, data.num_labeled, data.num_unlabeled), num_steps)
  tx = optim.make_optimizer(config.optimizer, schedule, variables["params"], config.trainable)
  decay = ema_decay(config, spe)
  repl = distributed.replicated(mesh)
  state_rng = jax.random.split(jax.random.PRNGKey(config.seed))[1]  # not a step's fold_in
  objective_state = objectives.init_state(objective, config, state_rng)
  state = jax.device_put(train_state.create(variables, tx, use_ema=bool(decay),
                                            objective_state=objective_state), repl)

  ckpt = checkpointing.Checkpointer(storage.join(workdir, "checkpoints"),
                                    config.checkpoint_every_steps, config.keep_checkpoints)
  if config.resume_step:
    ckpt.rewind(config.resume_step)
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(state, repl))
  if restored is not None:
    state = restored
    logging.info("Resumed from step %d in %s", int(state.step), workdir)

  teacher_model, frozen = None, {}
  if config.frozen_teacher:
    teacher_model, teacher_variables, _ = export.load_model(config.frozen_teacher)
    frozen = {"teacher": jax.device_put(teacher_variables, repl)}
  train_step = jax.jit(make_train_step(model, objective, tx, config, decay,
                                       data.views_on_device, teacher_model, num_steps),
                       in_shardings=(repl, distributed.data_sharding(mesh), repl),
                       out_shardings=(repl, repl), donate_argnums=0)
  return _Run(config=config, workdir=workdir, mesh=mesh, data=data, model=model,
              num_steps=num_steps, schedule=schedule, use_ema=bool(decay), ckpt=ckpt,
              state=state, frozen=frozen, train_step=train_step)


PROGRESS_EVERY_S = 30.0  # a progress line at least this often, whatever log_every_steps is


def _train(r: _Run, writer, evaluators, kit):
  """Steps from the restored step to `num_steps`: logs, periodic (validation) evals,
  checkpoints, preemption, divergence.

  After dispatching each step the loop waits for the previous step's metrics and checks them
  (DivergenceGuard): at most one step is queued ahead of the host, so a signal is acted on after
  the step in flight (then a save and exit), and a diverging step is never checkpointed.
  Progress is logged every `log_every_steps` and at least every PROGRESS_EVERY_S seconds.
  Returns (final state, images/s or None). Images/s and ETA count training steps only, from the
  end of the first (compiling) step, not evals, checkpoint saves and the writing of metrics.
  """
  config, data, ckpt, state = r.config, r.data, r.ckpt, r.state
  first_step, num_steps = int(state.step), r.num_steps
  preemption = _Preemption()
  guard = DivergenceGuard(config.get("divergence_factor", 0.0))

  def check(step, metrics):
    """Waits for `step`'s metrics, stops if they diverged; returns them on the host."""
    host = distributed.to_host(metrics)
    try:
      guard.check(host, step, resume_hint(ckpt))
    except DivergenceError:
      ckpt.close()  # finish the async save of the last good checkpoint before stopping
      preemption.restore()
      raise
    return host

  t_log, step_log = time.time(), first_step
  timed_steps, timed_s, pending = 0, 0.0, None
  for step in range(first_step + 1, num_steps + 1):
    batch = distributed.to_global(data.train_batch(step - 1), r.mesh)
    state, metrics = r.train_step(state, batch, r.frozen)
    if pending is not None:  # bounds the queue: the previous step is done before the next one
      check(*pending)
    pending = (step, metrics)
    ckpt.poll()
    is_last = step == num_steps
    interrupted = preemption.requested_at(step)
    save_now = ckpt.should_save(step) or is_last or interrupted
    log_now = (step % config.log_every_steps == 0 or save_now
               or time.time() - t_log >= PROGRESS_EVERY_S)
    if step == first_step + 1:
      jax.block_until_ready(metrics)
      first_step_s, t_log, step_log = time.time() - t_log, time.time(), step
      if not log_now:
        logging.info("first step (compiling) took %.1fs; progress every %d steps or %ds from "
                     "here", first_step_s, config.log_every_steps, PROGRESS_EVERY_S)
    if log_now or save_now:
      metrics, pending = check(step, metrics), None
    if log_now:
      now = time.time()
      metrics.update(lr=float(r.schedule(step - 1)))
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
      if kit and data.validation_indices.size:
        kit.run(state.eval_variables(r.use_ema), ["validation"], writer, step, num_steps)
      t_log += time.time() - t_pause
    if save_now:
      t_pause = time.time()
      ckpt.save(step, state, force=True)
      t_log += time.time() - t_pause  # the blocking part of the (async) save
    if interrupted and not is_last:
      ckpt.close()
      preemption.restore()
      raise SystemExit(f"{preemption.signal_name}: saved step {step} to {r.workdir}/checkpoints;"
                       " re-run the same command to resume")
  ckpt.close()
  preemption.restore()  # Ctrl-C during the final eval and export stops as usual
  return state, (timed_steps * data.images_per_step / timed_s) if timed_s > 0 else None


def _finish(r: _Run, state, evaluators, final: dict, *, first_step: int, images_per_s,
            wall_s: float) -> dict:
  """results.json (process 0) and the export (every process) from the final state and its
  evaluations. `wall_s` in results.json: the whole run's wall seconds, this segment's
  `wall_s` plus those of the earlier, stopped ones (`wall_segments_s`; a SIGKILLed segment
  is not counted)."""
  config, data, num_steps = r.config, r.data, r.num_steps
  segments_path = storage.join(r.workdir, SEGMENTS_FILE)
  segments = (json.loads(storage.read_text(segments_path)) if storage.exists(segments_path)
              else []) + [wall_s]
  rate = images_per_s
  if rate is None:  # too few timed steps: whole-run rate
    rate = (num_steps - first_step) * data.images_per_step / max(wall_s, 1e-9)
  # The first evaluator of each split; EMA weights when they are the ones exported.
  first = {}
  for name, (split, _) in evaluators.items():
    first.setdefault(split, final[name])
  pick = lambda split, k: (first[split][("ema_" if r.use_ema else "") + k] if split in first
                           else None)
  results = dict(
      method=config.objective, dataset=config.dataset, labels=config.labels,
      num_labeled=data.num_labeled, num_validation=int(data.validation_indices.size),
      steps=num_steps, top1=pick("test", "top1"), top5=pick("test", "top5"),
      validation_top1=pick("validation", "top1"), validation_top5=pick("validation", "top5"),
      wall_s=sum(segments), wall_segments_s=segments, images_per_s=rate,
      resumed_from_step=first_step, evals=final)
  validation = [name for name, (split, _) in evaluators.items() if split == "validation"]
  if validation:  # best and median of the last k evaluations (TensorBoard keeps the curve)
    tag = f"{validation[0]}/{'ema_' if r.use_ema else ''}top1"
    results.update(aggregate.curve_stats(events.read_scalars(r.workdir).get(tag, []),
                                         config.median_of_last))
  export.write_export(
      storage.join(r.workdir, "export"), config.model, state.eval_variables(r.use_ema),
      image_size=config.input.image_size, channels=data.image_shape[-1],
      class_names=data.class_names,
      meta=dict(method=config.objective, dataset=config.dataset, labels=config.labels,
                eval_crop=config.input.eval_crop, step=num_steps,
                weights="ema" if r.use_ema else "raw", top1=results["top1"]))
  if distributed.is_writer():
    storage.write_text(storage.join(r.workdir, "results.json"), json.dumps(results, indent=2))
  distributed.barrier(f"{r.workdir}/results.json written")
  return results


def unfinished_parts(workdir: str) -> list[str]:
  """What the end of `run` writes that `workdir` lacks: results.json and the export's parts
  (`export.PARTS`); [] = finished."""
  missing = [] if storage.exists(storage.join(workdir, "results.json")) else ["results.json"]
  return missing + [f"export/{p}" for p in export.missing_parts(storage.join(workdir, "export"))]


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
    if evaluators_lib.kind_of(spec) != evaluators_lib.TOP1:
      continue  # evaluators_lib.Evaluators runs those
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
