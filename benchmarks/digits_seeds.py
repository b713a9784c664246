"""The digits Results table as mean ± std of test top-1 over seeds, one run per (method, seed).

    PYTHONPATH=. python benchmarks/digits_seeds.py [--num_seeds=5] [--digits_methods=supervised,moam]

Each run is the README's command for the method (`configs/<config>.py:dataset=digits[,args]`)
with `seed` set to 0, 1, ... (in every stage of a pipeline), trained in
`<digits_workdirs>/<method>/seed<N>` by `runner.run`, as `main.py` does; a finished workdir
re-reports its result, so an interrupted table resumes. Prints the result as JSON and writes
`<table_out>.json` and `<table_out>.md` after each row (std: sample standard deviation,
ddof 1); the rows of an existing table at the same seeds and overrides for methods this run
leaves out are kept, so the table can be filled a few methods at a time.
`--set KEY=VALUE` (repeatable) overrides a key of every run (of every stage), e.g.
`--set total_steps=2` for a smoke test.
"""
import ast
import json
import os

from absl import app, flags
import numpy as np

import render_docs
from s4l_jax import config_lib, cpu_flags, logs

# Row name -> (config file, config arg after dataset=digits), in the README's order.
METHODS = {
    "supervised": ("supervised", ""),
    "mean_teacher": ("mean_teacher", ""),
    "fixmatch": ("fixmatch", ""),
    "moam": ("moam", ""),
    "simclrv2": ("simclrv2", ""),
    "noisy_student": ("noisy_student", "iterations=2"),
}

# Flag names unique among the benchmarks (tests import them together).
_METHODS = flags.DEFINE_list("digits_methods", list(METHODS),
                             f"Rows, of {', '.join(METHODS)}.")
_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Seeds 0..N-1 per method.")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE override of every run (and stage).")
_WORKDIRS = flags.DEFINE_string("digits_workdirs", "workdirs/digits_seeds", "Run workdirs.")
_OUT = flags.DEFINE_string("table_out", "benchmarks/results/digits_seeds",
                           "Output path prefix.")


def command(method: str) -> str:
  name, arg = METHODS[method]
  return f"configs/{name}.py:dataset=digits" + (f",{arg}" if arg else "")


def run_config(method: str, seed: int, overrides: dict):
  """The method's digits config with `seed` and `overrides` set in every run (stage)."""
  name, arg = METHODS[method]
  config = config_lib.load_config(name, "dataset=digits" + (f",{arg}" if arg else ""))
  runs = config.stages.values() if "stages" in config else [config]
  for run in runs:
    run.update_from_flattened_dict(dict(overrides, seed=seed))
  return config


def parse_overrides(items) -> dict:
  """['total_steps=2', 'model.width=1'] -> {'total_steps': 2, 'model.width': 1}."""
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--set {item!r}: expected KEY=VALUE")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def summarize(method: str, runs: list[dict]) -> dict:
  top1 = np.array([100 * r["top1"] for r in runs])
  return dict(method=method, command=command(method), seeds=len(runs), top1=top1.tolist(),
              mean=float(top1.mean()), std=float(top1.std(ddof=1)) if len(runs) > 1 else 0.0,
              min=float(top1.min()), max=float(top1.max()))


def run_table(methods, seeds: int, workdir_root: str, overrides: dict, on_row=None) -> dict:
  from s4l_jax import runner  # pylint: disable=g-import-not-at-top  # after cpu_flags
  result = dict(seeds=seeds, overrides=overrides, rows=[])
  for method in methods:
    runs = [runner.run(run_config(method, seed, overrides),
                       os.path.join(workdir_root, method, f"seed{seed}"))
            for seed in range(seeds)]
    result["rows"].append(summarize(method, runs))
    if on_row:
      on_row(result)
  return result


def merge_rows(previous: dict | None, result: dict) -> dict:
  """`result` plus `previous`'s rows of the methods `result` lacks, when both tables have the
  same seeds and overrides; rows in METHODS order."""
  rows = {r["method"]: r for r in result["rows"]}
  if previous and (previous["seeds"], previous["overrides"]) == (result["seeds"],
                                                                 result["overrides"]):
    rows = {r["method"]: r for r in previous["rows"]} | rows
  return dict(result, rows=[rows[m] for m in METHODS if m in rows])


def read_table(out: str) -> dict | None:
  """The table `write` left at `out`, or None."""
  if not os.path.exists(out + ".json"):
    return None
  with open(out + ".json") as f:
    return json.load(f)


def to_markdown(result) -> str:
  lines = [f"Test top-1 % on digits over seeds 0-{result['seeds'] - 1} (mean ± sample std; "
           f"min-max).", "", "| method | command | test top-1 % | min-max |",
           "| --- | --- | --- | --- |"]
  for r in result["rows"]:
    lines.append(f"| {r['method']} | `{r['command']}` | {r['mean']:.2f} ± {r['std']:.2f} | "
                 f"{r['min']:.2f}-{r['max']:.2f} |")
  return "\n".join(lines + comparisons(result["rows"])) + "\n"


def comparisons(rows) -> list:
  """One line per method against supervised's row: the difference of means (points) and whether
  it exceeds twice the larger std, the rule by which one method is read as beating another."""
  base = next((r for r in rows if r["method"] == "supervised"), None)
  if base is None or len(rows) < 2:
    return []
  lines = ["", "Against supervised's mean (a method beats another only beyond twice the larger "
           "std):", ""]
  for r in rows:
    if r is not base:
      diff, bound = r["mean"] - base["mean"], 2 * max(r["std"], base["std"])
      winner, loser = (r["method"], "supervised") if diff > 0 else ("supervised", r["method"])
      verdict = (f"beyond it: {winner} beats {loser}" if abs(diff) > bound
                 else "within it: neither beats the other")
      lines.append(f"- {r['method']}: {diff:+.2f} points (twice the larger std: {bound:.2f}), "
                   f"{verdict}")
  return lines


def write(result, out: str):
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  with open(out + ".json", "w") as f:
    json.dump(result, f, indent=2)
  with open(out + ".md", "w") as f:
    f.write(to_markdown(result))
  render_docs.after_write(out + ".md")


def main(argv):
  del argv
  logs.configure()
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise app.UsageError(f"unknown methods {unknown}; valid: {', '.join(METHODS)}")
  previous = read_table(_OUT.value)
  result = run_table(_METHODS.value, _SEEDS.value, _WORKDIRS.value, parse_overrides(_SET.value),
                     on_row=lambda r: write(merge_rows(previous, r), _OUT.value))
  result = merge_rows(previous, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  cpu_flags.apply()  # before jax starts, as main.py
  app.run(main)
