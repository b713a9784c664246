"""Entry point behind main.py: validates, records the config, then trains.

A config is either one training run, or a pipeline of runs in `config.stages` (MOAM, Noisy
Student): each stage trains in `WORKDIR/<stage>`, `@<stage>` in `teacher` / `init_from` names
that stage's export (stages run after the ones they name: `stage_order`), finished stages are
skipped on re-runs, and `WORKDIR/results.json` combines them.
The workdir is locked for the run, and a re-run's config must match the one that started it
(s4l_jax/workdir.py).
Every process of a job runs this: process 0 writes the plain files (then a barrier), and
whether a stage is finished is process 0's reading, shared with all.
"""
import json

from s4l_jax import (config_lib, distributed, pseudo_label, storage, train, validation,
                     workdir as workdir_lib)


def run(config, workdir: str) -> dict:
  """Trains `config` (one run, or its stages) in `workdir`, holding the workdir's lock.

  A workdir this call created is removed again when the run is refused before anything but
  the lock and the config was written in it (by validation, or by its data before the first
  step): a refused run leaves nothing behind.
  """
  created = not distributed.agree(storage.exists(workdir))
  try:
    with workdir_lib.lock(workdir):
      if "stages" in config:
        return run_stages(config, workdir)
      return run_one(config, workdir)
  except (ValueError, FileNotFoundError):
    if created and distributed.is_writer() and set(storage.listdir(workdir)) <= {
        workdir_lib.LOCK_FILE, workdir_lib.CONFIG_FILE}:
      storage.rmtree(workdir)
    raise


def check(config):
  """Raises ValueError (one line) for a config, one run or a pipeline, that cannot train
  whatever the machine and data (`validation.validate_config`; a pipeline's stage names and
  references too): `main.py --check_only`. Creates nothing."""
  if "stages" not in config:
    _check_no_stage_refs(config)
    validation.validate_config(config)
    return
  selected_stages(config)
  for name in config.stages:
    try:
      validation.validate_config(config.stages[name].copy_and_resolve_references())
    except ValueError as e:
      raise ValueError(f"stages.{name}: {e}") from None


def _check_no_stage_refs(config):
  for key in config_lib.EXPORT_PATH_KEYS:
    if config[key].startswith("@"):
      raise ValueError(f"{key}={config[key]!r}: '@<stage>' names a stage's export only "
                       "inside a pipeline config (config.stages); give an export directory")


def run_one(config, workdir: str, stage_root: str | None = None) -> dict:
  """Trains one run in `workdir`. A pipeline's stage (`stage_root`: the pipeline's workdir)
  trains with its `@<stage>` references resolved to STAGE_ROOT/<stage>/export and records
  them as written in config.json, so that a copied or moved workdir resumes."""
  if stage_root is None:
    _check_no_stage_refs(config)
  resolved = config if stage_root is None else resolve_stage_refs(config, stage_root)
  validation.validate(resolved)
  workdir_lib.check_config(config, workdir, stage_root)
  distributed.barrier(f"{workdir}: config checked")  # before process 0 replaces config.json
  if resolved.teacher:
    resolved = with_pseudo_labels(resolved, workdir)
  if distributed.is_writer():
    recorded = resolved.copy_and_resolve_references()
    recorded.update({k: config[k] for k in config_lib.EXPORT_PATH_KEYS
                     if config[k].startswith("@")})
    storage.makedirs(workdir)
    storage.write_text(storage.join(workdir, workdir_lib.CONFIG_FILE),
                       recorded.to_json_best_effort(indent=2))
  return train.run(resolved, workdir)


def with_pseudo_labels(config, workdir: str):
  """Labels the train split with `config.teacher` once (WORKDIR/pseudo_labels.npz)."""
  path = storage.join(storage.absolute(workdir), "pseudo_labels.npz")
  if not distributed.agree(storage.exists(path)) and distributed.is_writer():
    storage.makedirs(workdir)
    stats = pseudo_label.generate(config.teacher, config, path + ".tmp.npz")
    storage.rename(path + ".tmp.npz", path)
    storage.write_text(storage.join(workdir, "pseudo_labels.json"),
                       json.dumps(dict(stats, teacher=config.teacher), indent=2))
  distributed.barrier(f"{path} written")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.pseudo_labels = path
  return config


def resolve_stage_refs(stage, workdir: str):
  """`@step1` in an export-path key (`config_lib.EXPORT_PATH_KEYS`) -> WORKDIR/step1/export."""
  stage = stage.copy_and_resolve_references()
  for key in config_lib.EXPORT_PATH_KEYS:
    if stage[key].startswith("@"):
      stage[key] = storage.join(workdir, stage[key][1:], "export")
  return stage


def stage_order(stages) -> list[str]:
  """Stage names, each after the stages its `@` references name, else in key order (a
  ConfigDict's keys are sorted: student10 < student2 < teacher); ValueError on a reference
  to no stage or a cycle."""
  names = list(stages.keys())
  needs = {}
  for name in names:
    refs = {stages[name][k][1:] for k in config_lib.EXPORT_PATH_KEYS
            if stages[name][k].startswith("@")}
    unknown = sorted(refs - set(names))
    if unknown:
      raise ValueError(f"stages.{name} references @{unknown[0]}, no stage; stages: {names}")
    needs[name] = refs
  order = []
  while len(order) < len(names):
    ready = [n for n in names if n not in order and needs[n] <= set(order)]
    if not ready:
      raise ValueError(f"stages reference each other in a cycle: "
                       f"{sorted(set(names) - set(order))}")
    order.append(ready[0])
  return order


def selected_stages(config) -> list[str]:
  """The stages `config.run_stages` selects ("all", or names joined by "+"), in run order;
  ValueError (one line) naming an unknown one."""
  names = stage_order(config.stages)
  selected = names if config.run_stages == "all" else config.run_stages.split("+")
  unknown = set(selected) - set(names)
  if unknown:
    raise ValueError(f"no stage {', '.join(sorted(unknown))} in this pipeline (the config arg "
                     f"step=, or --config.run_stages); its stages: {', '.join(names)}, or all")
  return [name for name in names if name in selected]


def run_stages(config, workdir: str) -> dict:
  names = stage_order(config.stages)
  selected = selected_stages(config)
  for name in names:  # fail fast on everything that does not depend on an earlier stage
    stage = config.stages[name].copy_and_resolve_references()
    try:  # `@stage` exports are checked when their stage has run
      validation.validate(stage)
    except ValueError as e:
      raise ValueError(f"stages.{name}: {e}") from None
  results = {}
  for name in selected:
    stage_dir = storage.join(workdir, name)
    stage = config.stages[name].copy_and_resolve_references()
    if config.get("allow_config_change"):
      stage.allow_config_change = True
    # Finished: results.json and a complete export, written by process 0 before a barrier;
    # otherwise the stage runs (and rewrites what its final checkpoint lacks).
    if distributed.agree(not train.unfinished_parts(stage_dir)):
      # A finished stage of another config is stale.
      workdir_lib.check_config(stage, stage_dir, stage_root=workdir)
      results[name] = json.loads(storage.read_text(storage.join(stage_dir, "results.json")))
      continue
    results[name] = run_one(stage, stage_dir, stage_root=workdir)
  last = results[selected[-1]]
  combined = dict(
      method=config.method, dataset=last["dataset"], labels=last["labels"],
      steps=sum(r["steps"] for r in results.values()), top1=last["top1"], top5=last["top5"],
      validation_top1=last.get("validation_top1"), validation_top5=last.get("validation_top5"),
      wall_s=sum(r["wall_s"] for r in results.values()),
      images_per_s=last["images_per_s"], stages=results)
  if distributed.is_writer():
    storage.write_text(storage.join(workdir, "results.json"), json.dumps(combined, indent=2))
  distributed.barrier(f"{workdir}/results.json written")
  return combined
