"""Splices the results tables of `benchmarks/results/` into the docs, so every measured figure
lives in one place: the results file a benchmark script wrote.

In a doc, a block

    <!-- results: digits_seeds.md -->
    ...
    <!-- /results -->

holds exactly the text of `benchmarks/results/digits_seeds.md`. Usage, from the repo root:

    python benchmarks/render_docs.py           # rewrite the blocks of every doc in DOCS
    python benchmarks/render_docs.py --check   # exit 1 naming each doc whose blocks are stale

A block without its end marker, an end marker without its block, or a block whose results
file does not exist is a one-line error (exit 2), and no doc is written.
"""
import argparse
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
DOCS = ("README.md", "benchmarks/README.md",  # relative to ROOT
        *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))))
START = re.compile(r"<!-- results: (\S+) -->")
END = "<!-- /results -->"
COMMAND = "python benchmarks/render_docs.py"


class RenderError(ValueError):
  """A malformed block: the message names the doc, its line and what is wrong."""


def _check_no_end(text: str, begin: int, end: int, doc: str):
  """Raises if an end marker lies in text[begin:end], outside every block."""
  orphan = text.find(END, begin, end)
  if orphan >= 0:
    line = text.count("\n", 0, orphan) + 1
    raise RenderError(f"{doc}:{line}: '{END}' closes no block")


def render(text: str, doc: str = "<doc>", results_dir: str = RESULTS_DIR) -> str:
  """`text` with every block's body replaced by its results file; `doc` names it in errors."""
  out, pos = [], 0
  for start in START.finditer(text):
    line = text.count("\n", 0, start.start()) + 1
    if start.start() < pos:  # a start marker inside the previous block
      raise RenderError(f"{doc}:{line}: '{start.group(0)}' opens inside another block")
    _check_no_end(text, pos, start.start(), doc)
    end = text.find(END, start.end())
    if end < 0:
      raise RenderError(f"{doc}:{line}: '{start.group(0)}' has no '{END}'")
    path = os.path.join(results_dir, start.group(1))
    if not os.path.isfile(path):
      raise RenderError(f"{doc}:{line}: no results file {os.path.relpath(path, ROOT)}")
    with open(path) as f:
      body = f.read().strip("\n")
    out += [text[pos:start.end()], "\n", body, "\n", END]
    pos = end + len(END)
  _check_no_end(text, pos, len(text), doc)
  return "".join(out) + text[pos:]


def stale_docs(root: str = ROOT, docs=DOCS, results_dir: str = RESULTS_DIR) -> dict:
  """{doc: rendered text} for each doc whose blocks differ from its results files."""
  stale = {}
  for doc in docs:
    with open(os.path.join(root, doc)) as f:
      text = f.read()
    rendered = render(text, doc, results_dir)
    if rendered != text:
      stale[doc] = rendered
  return stale


def refresh(root: str = ROOT, docs=DOCS, results_dir: str = RESULTS_DIR) -> list:
  """Rewrites the stale docs (all checked before any is written); returns their names."""
  stale = stale_docs(root, docs, results_dir)
  for doc, text in stale.items():
    with open(os.path.join(root, doc), "w") as f:
      f.write(text)
  return sorted(stale)


def after_write(out_path: str):
  """Refreshes the docs when a benchmark script has just written `out_path` (its .md or its
  prefix) under `benchmarks/results/`; output written elsewhere leaves the docs alone."""
  if os.path.dirname(os.path.abspath(out_path)) == RESULTS_DIR:
    for doc in refresh():
      print(f"render_docs: updated {doc}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if a doc is out of date")
  args = parser.parse_args(argv)
  try:
    if args.check:
      stale = sorted(stale_docs(ROOT, DOCS, RESULTS_DIR))
      for doc in stale:
        print(f"{doc} is out of date with benchmarks/results/: run `{COMMAND}`",
              file=sys.stderr)
      return 1 if stale else 0
    for doc in refresh(ROOT, DOCS, RESULTS_DIR):
      print(f"updated {doc}")
    return 0
  except RenderError as e:
    print(f"render_docs: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
