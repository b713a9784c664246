"""The resolved config of every config x dataset x arg combination the tests, benchmarks and
docs use, as plain JSON: the proof that a refactor of the configs changes no run.

    PYTHONPATH=. python tests/resolved_configs.py        # rewrites the dump
    PYTHONPATH=. python tests/resolved_configs.py KEY    # prints one combination of it

The dump (tests/data/resolved_configs.json.gz: one combination per line, keys sorted; gzip,
2.5 MB of text) is generated from the code and never edited by hand.

`tests/test_config_recipes.py` recomputes every combination and compares it with the
committed dump; a change meant to move a config is listed there (`INTENDED_CHANGES`,
`INTENDED_REWRITES`, `INTENDED_ADDITIONS`).
"""
import gzip
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMP = os.path.join(ROOT, "tests", "data", "resolved_configs.json.gz")

DATASETS = ("imagenet2012", "cifar10", "digits", "folder:/data/cifar10")
LABELS = ("10pct", "1pct", "4000", "400perclass")
# Args a config cannot load without (export dirs; `export_trunk` tolerates a missing one).
REQUIRED_ARGS = {"linear_eval": "pretrained=/runs/rotation/export,",
                 "finetune": "pretrained=/runs/rotation/export,",
                 "pseudo_label": "teacher=/runs/supervised/export,"}
# Per-config args and their documented values (each on every dataset unless a dataset is
# named in the arg).
EXTRA_ARGS = {
    "clusterfit": ["step=features", "step=clusterfit", "step=linear", "clusters=7",
                   "pretrained=/runs/rotation/export", "steps=20"],
    "fixmatch": ["labels=40", "labels=250", "labels=4000", "", "steps=20"],
    "jigsaw": ["permutations=10"],
    "moam": ["step=1", "step=2", "step=3", "steps=20"],
    "multitask": ["tasks=rotation", "tasks=rotation+exemplar+jigsaw+relative_position",
                  "s4l=true", "tasks=exemplar,s4l=true"],
    "noisy_student": ["iterations=1", "iterations=2,grow=2.0", "steps=20"],
    "s4l_jigsaw": ["permutations=10"],
    "simclrv2": ["step=1", "step=2", "step=3", "memory=65536", "student=r50_1x",
                 "model=r50_2x_sk", "model=r152_3x_sk", "steps=20"],
    "tf_kd": ["teacher=reversed", "teacher=poor", "teacher=virtual", "step=teacher",
              "alpha=0.3,temperature=2.0,correct_prob=0.95", "steps=20"],
}
# fidelity=paper (ImageNet) and hparams_1pct of the unreleased 1% rows.
FIDELITY_ROWS = ("supervised", "pseudo_label", "vat", "vat_entmin", "s4l_rotation",
                 "s4l_exemplar")
HPARAMS_1PCT_ROWS = ("vat", "vat_entmin", "s4l_rotation", "s4l_exemplar")


def combinations() -> list[tuple[str, str]]:
  """(config name, arg) pairs, each once, in a stable order."""
  from s4l_jax import config_lib  # pylint: disable=g-import-not-at-top
  out = []
  for name in config_lib.config_names():
    req = REQUIRED_ARGS.get(name, "")
    out.append((name, req.rstrip(",")))  # the defaults
    for dataset in DATASETS:
      for labels in LABELS:
        out.append((name, f"{req}dataset={dataset},labels={labels}"))
      out.append((name, f"{req}dataset={dataset}"))
      out.append((name, f"{req}dataset={dataset},steps=20"))
      for extra in EXTRA_ARGS.get(name, ()):
        out.append((name, ",".join(filter(None, (req + f"dataset={dataset}", extra)))))
    out.append((name, f"{req}dataset=digits,evals=full"))
    if name in FIDELITY_ROWS:
      for labels in ("10pct", "1pct"):
        out.append((name, f"{req}labels={labels},fidelity=paper"))
    if name in HPARAMS_1PCT_ROWS:
      out.append((name, f"{req}labels=1pct,hparams_1pct=supervised"))
  return list(dict.fromkeys(out))


def harness_combinations() -> list[tuple[str, list[str]]]:
  """(key, `--config=` arg, [`--config.k=v` overrides]) of every run of
  benchmarks/label_efficiency.py at tests/test_benchmarks.py's settings, and on digits."""
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  import label_efficiency as le  # pylint: disable=g-import-not-at-top
  settings = dict(dataset="folder:/data/c10", labels="4000", steps=60, batch=16,
                  model="depth=10,width=2", evals=6, warmup_frac=0.05, ema_frac=0.02,
                  num_train=50000)
  out = []
  for s in (settings, dict(settings, dataset="digits", labels="100", model="")):
    for method in (*le.KNOWN, *(f"{m}_control" for m in le.CONTROLS), "fixmatch@0.1"):
      for workdir, argv in le.commands(method, 0, "/r", s):
        config = next(a for a in argv if a.startswith("--config="))
        overrides = [a for a in argv if a.startswith("--config.")]
        key = f"label_efficiency {s['dataset']} {method} {os.path.basename(workdir)}"
        out.append((key, config.removeprefix("--config=configs/"), overrides))
  return out


def _plain(value):
  """JSON-able: numpy arrays and tuples as lists."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_plain(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def _override(config, flag: str):
  """Applies `--config.a.b=v` as main.py's flags do: v takes the type of the current value."""
  path, _, text = flag.removeprefix("--config.").partition("=")
  *parents, key = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  current = node[key]
  if isinstance(current, bool):
    value = text.lower() in ("true", "1")
  elif isinstance(current, (int, float)):
    value = type(current)(float(text)) if isinstance(current, float) else int(text)
  else:
    value = text
  node[key] = value


def resolve(name: str, arg: str, overrides=()) -> dict:
  """The resolved config (`to_dict()`, plain JSON types) of `name:arg` with `overrides`."""
  from s4l_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(name, arg or None)
  for flag in overrides:
    _override(config, flag)
  return _plain(config.to_dict())


def resolve_all() -> dict[str, dict]:
  """{combination key: resolved config} of every combination."""
  out = {f"{name}:{arg}": resolve(name, arg) for name, arg in combinations()}
  for key, config, overrides in harness_combinations():
    name, _, arg = config.partition(":")
    out[key] = resolve(name.removesuffix(".py"), arg, overrides)
  return out


def flatten(tree, prefix: str = "") -> dict:
  """{"a.b.c": leaf} of nested dicts."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k in sorted(tree):
    out.update(flatten(tree[k], f"{prefix}.{k}" if prefix else k))
  return out


def first_difference(expected: dict, actual: dict) -> str | None:
  """The first key path (sorted) where two resolved configs differ, with both values."""
  a, b = flatten(expected), flatten(actual)
  for key in sorted(set(a) | set(b)):
    if key not in b or key not in a or a[key] != b[key] or type(a[key]) != type(b[key]):
      return f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
  return None


def write(path: str = DUMP):
  """Writes the dump: one combination per line, keys sorted."""
  resolved = resolve_all()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
    f.write(("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(resolved[k], sort_keys=True)}"
                               for k in sorted(resolved)) + "\n}\n").encode())
  return resolved


def load(path: str = DUMP) -> dict:
  with gzip.open(path, "rt") as f:
    return json.load(f)


if __name__ == "__main__":
  if len(sys.argv) > 1:
    print(json.dumps(load()[sys.argv[1]], indent=1, sort_keys=True))
  else:
    print(f"{len(write())} combinations -> {DUMP}")
