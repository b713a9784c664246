""".ci/run runs the README's Quick start lines verbatim: the parsing and checks it relies on."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI_RUN = os.path.join(ROOT, ".ci", "run")
QUICKSTART = os.path.join(ROOT, ".ci", "quickstart.py")
README = os.path.join(ROOT, "README.md")


def _quickstart():
  spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


quickstart = _quickstart()


def _read(path):
  with open(path) as f:
    return f.read()


def test_readme_has_the_two_lines_ci_runs():
  line1, line2 = quickstart.quickstart_lines(_read(README))
  ci = _read(CI_RUN)
  workdir = re.search(r"^WORKDIR=(\S+)$", ci, re.M).group(1)
  assert line1.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e . && ")
  assert line1.endswith(f".venv/bin/python main.py --config=configs/moam.py:dataset=digits "
                        f"--workdir={workdir}")
  assert '.venv/bin/pip install -q -e ".[test]"' in line2
  assert line2.endswith(
      '.venv/bin/python -m pytest -q -n auto --maxprocesses=4 -m "not slow" tests')


def test_ci_runs_the_slow_tier_after_line_2():
  """Line 2 runs the fast tier; .ci/run then runs the rest, so every test runs once."""
  ci = _read(CI_RUN)
  slow_tier = ".venv/bin/python -m pytest -q -n auto --maxprocesses=4 -m slow tests"
  assert ci.index('run_line 2 "${LINES[1]}"') < ci.index(slow_tier)


@pytest.mark.parametrize("block, problem", [
    ("", "has 0 'python3 -m venv' lines"),
    ("python3 -m venv a\n", "has 1 'python3 -m venv' lines"),
    ("python3 -m venv a\npython3 -m venv b\npython3 -m venv c\n", "has 3 "),
])
def test_wrong_line_count_fails(block, problem):
  readme = f"# x\n\n## Quick start\n\ntext\n\n```sh\n{block}```\n\n## Next\n"
  with pytest.raises(ValueError, match=problem):
    quickstart.quickstart_lines(readme)


def test_only_the_quick_start_section_counts():
  other = "```sh\npython3 -m venv elsewhere\n```\n"
  readme = (f"# x\n{other}\n## Quick start\n\n```sh\npython3 -m venv a && b\n"
            f"python3 -m venv c\n```\n\n## Later\n\n{other}")
  assert quickstart.quickstart_lines(readme) == ["python3 -m venv a && b", "python3 -m venv c"]
  with pytest.raises(ValueError, match="no '## Quick start' section"):
    quickstart.quickstart_lines("# x\n" + other)


def test_agree_checks_top1_and_top5(tmp_path):
  results = tmp_path / "results.json"
  results.write_text(json.dumps({"top1": 0.9, "top5": 1.0, "wall_s": 3.0}))
  out = tmp_path / "eval.out"

  def agree(top1, top5):
    out.write_text("log line\n" + json.dumps({"top1": top1, "top5": top5, "count": 360}) + "\n")
    return subprocess.run([sys.executable, QUICKSTART, "agree", str(results), str(out)],
                          capture_output=True, text=True)
  assert agree(0.9 + 1e-9, 1.0).returncode == 0
  failed = agree(0.9, 0.99)
  assert failed.returncode != 0 and "top5: results.json 1.0, evaluated 0.99" in failed.stderr


def test_ci_script_parses():
  assert subprocess.run(["bash", "-n", CI_RUN]).returncode == 0
