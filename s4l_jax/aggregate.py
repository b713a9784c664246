"""Reported statistics: one run's validation curve, and mean ± std over runs (seeds).

    python -m s4l_jax.aggregate WORKDIR [WORKDIR ...] [--json]

prints, for every number the runs' results.json have in common (`top1`, `validation_top1_*`,
`evals.<name>.<split>.<key>`, ...; a pipeline's last stage), its mean ± sample std over the
runs, as a Markdown table (or JSON with --json).
"""
import json
import statistics
import sys

from s4l_jax import storage

RESULTS_FILE = "results.json"


def curve_stats(curve, last_k: int, prefix: str = "validation_top1") -> dict:
  """`curve` [(step, accuracy), ...] in step order -> `<prefix>_best` (USB reports it; S4L
  the final one, results.json's `<prefix>`), `_best_step`, `_median` (FixMatch: the median
  of the last `last_k` evaluations), `_median_of_last` (how many that was), `_evals` (their
  number); {} for an empty curve."""
  if not curve:
    return {}
  values = [v for _, v in curve]
  best = max(range(len(values)), key=values.__getitem__)
  return {f"{prefix}_best": values[best],
          f"{prefix}_best_step": int(curve[best][0]),
          f"{prefix}_median": statistics.median(values[-last_k:]),
          f"{prefix}_median_of_last": min(last_k, len(values)), f"{prefix}_evals": len(values)}


def mean_std(values) -> tuple:
  """(mean, sample std; 0 for one value)."""
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def flatten(tree: dict, prefix: str = "") -> dict:
  """{dotted key: number} of the numeric leaves of nested dicts (bools and lists left out)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flatten(value, name + "."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      out[name] = float(value)
  return out


def load_run(workdir: str) -> tuple:
  """(directory, results) of a finished run: its results.json, or a pipeline's last stage's
  results and directory (its TensorBoard events); FileNotFoundError."""
  path = storage.join(workdir, RESULTS_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(f"{workdir} has no {RESULTS_FILE} (not a finished run)")
  results = json.loads(storage.read_text(path))
  if "stages" not in results:
    return workdir, results
  name, last = list(results["stages"].items())[-1]
  return storage.join(workdir, name), dict(last, wall_s=results.get("wall_s"))


def aggregate(workdirs) -> dict:
  """{key: {"mean", "std", "n"}} over the runs, for the numeric keys all of them have."""
  flat = [flatten(load_run(w)[1]) for w in workdirs]
  keys = [k for k in flat[0] if all(k in f for f in flat[1:])]
  out = {}
  for key in keys:
    mean, std = mean_std([f[key] for f in flat])
    out[key] = dict(mean=mean, std=std, n=len(flat))
  return out


def to_markdown(summary: dict) -> str:
  lines = ["| key | mean | std | runs |", "| --- | --- | --- | --- |"]
  lines += [f"| {k} | {s['mean']:.6g} | {s['std']:.3g} | {s['n']} |" for k, s in summary.items()]
  return "\n".join(lines)


def main(argv):
  args = [a for a in argv[1:] if a != "--json"]
  if not args:
    sys.exit("usage: python -m s4l_jax.aggregate WORKDIR [WORKDIR ...] [--json]")
  try:
    summary = aggregate(args)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"ERROR: {e}")
  print(json.dumps(summary, indent=2) if "--json" in argv else to_markdown(summary))


if __name__ == "__main__":
  main(sys.argv)
