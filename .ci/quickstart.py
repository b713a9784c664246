"""The README's Quick start lines, for `.ci/run` (which runs them verbatim), and its checks.

    python3 .ci/quickstart.py lines README.md              # the lines, one per output line
    python3 .ci/quickstart.py agree RESULTS_JSON EVAL_OUT   # evaluate's top1/top5 == results

Standard library only: it runs before any venv exists.
"""
import json
import re
import sys

NUM_LINES = 2
TOLERANCE = 1e-6


def quickstart_lines(readme: str) -> list[str]:
  """The `python3 -m venv` lines of the first ```sh block under "## Quick start"."""
  section = re.search(r"^## Quick start\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
  if not section:
    raise ValueError("README.md has no '## Quick start' section")
  block = re.search(r"^```sh\n(.*?)^```", section.group(1), re.S | re.M)
  if not block:
    raise ValueError("README.md's Quick start has no ```sh block")
  lines = [l.strip() for l in block.group(1).splitlines() if l.startswith("python3 -m venv ")]
  if len(lines) != NUM_LINES:
    raise ValueError(f"README.md's Quick start block has {len(lines)} 'python3 -m venv' lines, "
                     f"expected {NUM_LINES}")
  return lines


def last_json(text: str) -> dict:
  """The last line of `text` that is a JSON object (what main.py / evaluate print)."""
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise ValueError("no JSON line in the output")


def disagreement(results: dict, evaluated: dict, tolerance: float = TOLERANCE) -> str:
  """'' if top1 and top5 agree within `tolerance`, else what differs."""
  return "; ".join(f"{k}: results.json {results[k]}, evaluated {evaluated[k]}"
                   for k in ("top1", "top5") if abs(results[k] - evaluated[k]) > tolerance)


def main(argv):
  if len(argv) == 3 and argv[1] == "lines":
    with open(argv[2]) as f:
      print("\n".join(quickstart_lines(f.read())))
  elif len(argv) == 4 and argv[1] == "agree":
    with open(argv[2]) as f, open(argv[3]) as g:
      results, evaluated = json.load(f), last_json(g.read())
    problem = disagreement(results, evaluated)
    if problem:
      sys.exit(f"{argv[3]} disagrees with {argv[2]}: {problem}")
    print(f"agree: top1 {evaluated['top1']}, top5 {evaluated['top5']}")
  else:
    sys.exit(__doc__)


if __name__ == "__main__":
  main(sys.argv)
