"""benchmarks/render_docs.py: the docs' results blocks equal their results files (the CI check),
and the splice itself (replacement, errors)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import render_docs  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_repository_docs_agree_with_their_results_files():
  assert render_docs.stale_docs() == {}, f"run `{render_docs.COMMAND}`"


def test_every_doc_has_a_block_and_every_block_names_an_existing_file():
  for doc in render_docs.DOCS:
    with open(os.path.join(ROOT, doc)) as f:
      names = render_docs.START.findall(f.read())
    for name in names:
      assert os.path.isfile(os.path.join(render_docs.RESULTS_DIR, name)), (doc, name)
  assert any(render_docs.START.search(open(os.path.join(ROOT, d)).read())
             for d in render_docs.DOCS)


@pytest.fixture
def results_dir(tmp_path):
  (tmp_path / "a.md").write_text("| x |\n| --- |\n| 1.00 |\n")
  (tmp_path / "b.md").write_text("b table\n")
  return str(tmp_path)


def test_render_replaces_each_block_body_and_keeps_the_rest(results_dir):
  text = ("intro\n<!-- results: a.md -->\nold 9.99\n<!-- /results -->\nmiddle\n"
          "<!-- results: b.md --><!-- /results -->\nend\n")
  assert render_docs.render(text, results_dir=results_dir) == (
      "intro\n<!-- results: a.md -->\n| x |\n| --- |\n| 1.00 |\n<!-- /results -->\nmiddle\n"
      "<!-- results: b.md -->\nb table\n<!-- /results -->\nend\n")


def test_render_is_idempotent_and_leaves_a_text_without_blocks_alone(results_dir):
  text = "a\n<!-- results: a.md -->\n<!-- /results -->\n"
  once = render_docs.render(text, results_dir=results_dir)
  assert render_docs.render(once, results_dir=results_dir) == once
  assert render_docs.render("no blocks 1.5 %\n", results_dir=results_dir) == "no blocks 1.5 %\n"


@pytest.mark.parametrize("text, message", [
    ("x\n<!-- results: a.md -->\nbody\n", "doc.md:2: '<!-- results: a.md -->' has no "
                                          "'<!-- /results -->'"),
    ("<!-- results: missing.md -->\n<!-- /results -->\n", "doc.md:1: no results file "),
    ("<!-- results: a.md -->\n<!-- results: b.md -->\n<!-- /results -->\n",
     "doc.md:2: '<!-- results: b.md -->' opens inside another block"),
    ("<!-- results: a.md -->\n<!-- /results -->\nx\n<!-- /results -->\n",
     "doc.md:4: '<!-- /results -->' closes no block"),
    ("x\n<!-- /results -->\n", "doc.md:2: '<!-- /results -->' closes no block"),
])
def test_malformed_blocks_are_one_line_errors_naming_doc_and_line(results_dir, text, message):
  with pytest.raises(render_docs.RenderError) as e:
    render_docs.render(text, "doc.md", results_dir)
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_refresh_writes_only_stale_docs_and_check_names_them(tmp_path, results_dir):
  (tmp_path / "fresh.md").write_text("<!-- results: b.md -->\nb table\n<!-- /results -->\n")
  (tmp_path / "stale.md").write_text("<!-- results: b.md -->\nold\n<!-- /results -->\n")
  docs = ("fresh.md", "stale.md")
  assert list(render_docs.stale_docs(str(tmp_path), docs, results_dir)) == ["stale.md"]
  assert render_docs.refresh(str(tmp_path), docs, results_dir) == ["stale.md"]
  assert (tmp_path / "stale.md").read_text() == (tmp_path / "fresh.md").read_text()
  assert render_docs.stale_docs(str(tmp_path), docs, results_dir) == {}


def test_a_malformed_doc_stops_refresh_before_any_doc_is_written(tmp_path, results_dir):
  (tmp_path / "stale.md").write_text("<!-- results: b.md -->\nold\n<!-- /results -->\n")
  (tmp_path / "broken.md").write_text("<!-- results: nope.md -->\n<!-- /results -->\n")
  with pytest.raises(render_docs.RenderError, match="broken.md:1: no results file"):
    render_docs.refresh(str(tmp_path), ("stale.md", "broken.md"), results_dir)
  assert "old" in (tmp_path / "stale.md").read_text()


def test_after_write_leaves_the_docs_alone_for_output_outside_results(tmp_path, monkeypatch):
  monkeypatch.setattr(render_docs, "refresh", lambda: pytest.fail("refreshed"))
  render_docs.after_write(str(tmp_path / "digits_seeds"))


def test_check_command_exits_zero_on_the_repository():
  done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "render_docs.py"),
                         "--check"], capture_output=True, text=True, cwd=ROOT, check=False)
  assert done.returncode == 0, done.stderr


def test_cli_prints_a_malformed_block_as_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
  (tmp_path / "doc.md").write_text("<!-- results: a.md -->\n")
  monkeypatch.setattr(render_docs, "ROOT", str(tmp_path))
  monkeypatch.setattr(render_docs, "DOCS", ("doc.md",))
  assert render_docs.main(["--check"]) == 2
  assert capsys.readouterr().err == (
      "render_docs: doc.md:1: '<!-- results: a.md -->' has no '<!-- /results -->'\n")


def test_cli_check_names_a_stale_doc_and_exits_1(tmp_path, monkeypatch, capsys, results_dir):
  (tmp_path / "doc.md").write_text("<!-- results: b.md -->\nold\n<!-- /results -->\n")
  monkeypatch.setattr(render_docs, "ROOT", str(tmp_path))
  monkeypatch.setattr(render_docs, "DOCS", ("doc.md",))
  monkeypatch.setattr(render_docs, "RESULTS_DIR", results_dir)
  assert render_docs.main(["--check"]) == 1
  assert capsys.readouterr().err.startswith("doc.md is out of date")
  assert "old" in (tmp_path / "doc.md").read_text()
  assert render_docs.main([]) == 0
  assert "b table" in (tmp_path / "doc.md").read_text()
