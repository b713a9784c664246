"""One PNG that shows runs: validation curves, probe per layer, robustness, confusion matrix.

    python -m s4l_jax.report WORKDIR [WORKDIR ...] [--out=PATH.png] [--split=test]

reads each run's TensorBoard events and results.json (a pipeline's: its last stage) and draws
(1) the validation top-1 curves (and kNN's, when evaluated), (2) the linear probe's accuracy
per layer, (3) accuracy under each corruption (mean over severities) and under FGSM per eps,
(4) the first run's row-normalised confusion matrix; (2)-(4) on `--split` (default test),
when the run has those evaluators (`evals=full`). Default output: WORKDIR/report.png of the
first run. Needs matplotlib (not a dependency of training).
"""
import os
import sys

from s4l_jax import aggregate, events, storage


def _label(workdir: str) -> str:
  return os.path.basename(os.path.normpath(workdir))


def draw(workdirs, out: str, split: str = "test"):
  """Writes the figure of `workdirs` to `out` (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  runs = []
  for w in workdirs:
    directory, results = aggregate.load_run(w)
    runs.append((w, results, events.read_scalars(directory)))
  fig, axes = plt.subplots(2, 2, figsize=(12, 9))
  curves, probes, robustness, confusion = axes.ravel()

  for w, results, scalars in runs:
    ema = "ema_" if "ema_top1" in results["evals"].get("test", {}) else ""
    for tag, style in ((f"validation/{ema}top1", "-"), ("knn/validation/top1", ":")):
      if scalars.get(tag):
        steps, values = zip(*scalars[tag])
        curves.plot(steps, 100 * np.array(values), style, marker=".",
                    label=f"{_label(w)} {tag.split('/')[0]}")
  curves.set(title="validation top-1 (solid) and kNN (dotted)", xlabel="step",
             ylabel="accuracy %")

  for w, results, _ in runs:
    probe = results["evals"].get("linear_probe", {}).get(split)
    if probe:
      probes.plot(list(probe), [100 * v for v in probe.values()], marker="o", label=_label(w))
  probes.set(title=f"linear probe per layer ({split})", ylabel="accuracy %")

  names, bars = [], []
  for w, results, _ in runs:
    corrupted = results["evals"].get("corruptions", {}).get(split, {})
    attacked = results["evals"].get("fgsm", {}).get(split, {})
    row = {k: v for k, v in corrupted.items() if "_s" not in k}
    row.update({("clean" if k == "eps0" else f"fgsm {k[3:]}px"): v
                for k, v in attacked.items()})
    if row:
      names = names or list(row)
      bars.append((_label(w), [row.get(n, np.nan) for n in names]))
  width = 0.8 / max(len(bars), 1)
  for i, (label, values) in enumerate(bars):
    robustness.bar(np.arange(len(names)) + i * width, 100 * np.array(values), width,
                   label=label)
  robustness.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45,
                        ha="right")
  robustness.set(title=f"corruptions (mean of 5 severities) and FGSM ({split})",
                 ylabel="accuracy %")

  matrix = runs[0][1]["evals"].get("per_class", {}).get(split, {}).get("confusion_matrix")
  if matrix:
    matrix = np.array(matrix, float)
    confusion.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues",
                     vmin=0, vmax=1)
    confusion.set(title=f"{_label(workdirs[0])}: confusion ({split}, rows = true class)",
                  xlabel="predicted", ylabel="true")
  for ax in (curves, probes, robustness):
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  for ax in axes.ravel():
    if not ax.has_data():
      ax.text(0.5, 0.5, "not evaluated (evals=full)", ha="center", va="center",
              transform=ax.transAxes)
  fig.tight_layout()
  with storage.open_file(out, "wb") as f:
    fig.savefig(f, format="png", dpi=80)
  plt.close(fig)


def main(argv):
  options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
  workdirs = [a for a in argv[1:] if not a.startswith("--")]
  if not workdirs or set(options) - {"out", "split"}:
    sys.exit("usage: python -m s4l_jax.report WORKDIR [WORKDIR ...] [--out=PATH.png] "
             "[--split=test]")
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    sys.exit("ERROR: s4l_jax.report draws with matplotlib, which is not installed "
             "(pip install matplotlib)")
  out = options.get("out", storage.join(workdirs[0], "report.png"))
  try:
    draw(workdirs, out, options.get("split", "test"))
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"ERROR: {e}")
  print(out)


if __name__ == "__main__":
  main(sys.argv)
