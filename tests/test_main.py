"""main.py's command line: --help, and a workdir that cannot be written ends in one line."""
import errno
import os
import re
import subprocess
import sys

import pytest

from s4l_jax import train_main as main
from testing_utils import ROOT

ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
# Orbax's error for a save into a full disk (TensorStore's, as a ValueError), shortened.
ORBAX_FULL_DISK = (
    'RESOURCE_EXHAUSTED: Error writing "params.trunk.conv/0" in OCDBT database at local file '
    '"/w/checkpoints/2.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/": '
    "Failed to write 249453 bytes to file 15: No space left on device [os_error_code='28']")


@pytest.mark.parametrize("command", (["main.py"], ["-m", "s4l_jax.evaluate"],
                                     ["-m", "s4l_jax.embed"], ["-m", "s4l_jax.convert"]))
def test_help_exits_0(command):
  proc = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--" in proc.stdout  # the flags' usage


def test_a_bad_flag_still_exits_1():
  proc = subprocess.run([sys.executable, "-m", "s4l_jax.evaluate", "--no_such_flag"],
                        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 1 and "no_such_flag" in proc.stderr


def test_storage_failure_names_the_reason_and_path():
  read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/w")
  assert main.storage_failure(read_only, "/ro/w") == f"{os.strerror(errno.EROFS)}: /ro/w"
  assert (main.storage_failure(ValueError(ORBAX_FULL_DISK), "/w")
          == f"{os.strerror(errno.ENOSPC)}: /w/checkpoints/2")
  # Not a failure to write: a missing file, a bad value, another TensorStore error.
  assert main.storage_failure(FileNotFoundError(2, "No such file", "/x"), "/w") is None
  assert main.storage_failure(ValueError("lr.base=-1 must be > 0"), "/w") is None
  assert main.storage_failure(ValueError("NOT_FOUND [os_error_code='2']"), "/w") is None


@pytest.fixture(name="full_disk")
def full_disk_fixture(tmp_path):
  """A 300 KB tmpfs: too small for a checkpoint (needs root and permission to mount)."""
  mount = tmp_path / "full"
  mount.mkdir()
  made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                        capture_output=True, check=False)
  if made.returncode:
    pytest.skip("cannot mount a tmpfs here")
  yield str(mount)
  subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_ends_in_one_line(full_disk):
  workdir = os.path.join(full_disk, "w")
  proc = subprocess.run(
      [sys.executable, "main.py", "--config=configs/supervised.py:dataset=digits,steps=2",
       f"--workdir={workdir}", "--config.model.depth=10", "--config.model.width=1",
       "--config.input.image_size=8"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  # The first write to fail is the checkpoint's here, but on CI's machine it was another file
  # in the workdir (tmpfs accounting differs): either way, the reason and a path in the workdir.
  assert re.fullmatch(rf"ERROR: {os.strerror(errno.ENOSPC)}: {re.escape(workdir)}(/\S+)?: the "
                      r"workdir must be writable, with free space; .* to resume .*", last), last


@pytest.mark.slow
def test_check_only_checks_the_config_and_creates_nothing(tmp_path):
  workdir = tmp_path / "w"
  for overrides, rc, last in (
      ([], 0, "config OK: supervised on digits"),
      (["--config.lr.base=-1"], 1, "ERROR: lr.base=-1.0 must be > 0")):
    proc = subprocess.run([sys.executable, "main.py", "--check_only", f"--workdir={workdir}",
                           "--config=configs/supervised.py:dataset=digits", *overrides],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == rc, proc.stderr[-2000:]
    assert (proc.stdout + proc.stderr).strip().splitlines()[-1] == last
  assert not workdir.exists()
