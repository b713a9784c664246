"""launch/ scripts: syntax, and the gcloud command lines they build (with a fake gcloud).

The fake gcloud records its argv; for `tpu-vm ssh` it also runs the --command locally with
HOME set to a temp dir, so the remote shell snippets (nohup, PID files, kill) really execute
against a stand-in `python` that just sleeps. No network, no training.
"""
import os
import pathlib
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Records argv (args separated by \x1f, calls ended by \x1e), then fakes behaviour.
( IFS=$'\x1f'; printf '%s\x1e' "$*" ) >> "$FAKE_LOG"
for a in "$@"; do
  case "$a" in
    describe) case "$*" in *queued-resources*) echo ACTIVE ;; *) echo READY ;; esac; exit 0 ;;
  esac
done
if [ "$3" = tpu-vm ] && [ "$4" = ssh ] && [ "${FAKE_EXEC:-1}" = 1 ]; then
  for a in "$@"; do
    case "$a" in --command=*) HOME="$FAKE_HOME" S4L_WORKER_ID=0 exec bash -c "${a#--command=}" ;; esac
  done
fi
exit 0
"""


@pytest.fixture
def env(tmp_path):
  fake = tmp_path / "gcloud"
  fake.write_text(FAKE_GCLOUD)
  fake.chmod(0o755)
  home = tmp_path / "home"
  (home / "s4l_jax").mkdir(parents=True)
  venv_bin = home / "s4l_venv" / "bin"
  venv_bin.mkdir(parents=True)
  py = venv_bin / "python"
  py.write_text('#!/usr/bin/env bash\n# Stand-in trainer: exits on SIGTERM like main.py.\n'
                'trap \'kill $!; exit 0\' TERM\nsleep "${FAKE_SLEEP:-60}" & wait\necho "top-1 1.00%"\n')
  py.chmod(0o755)
  env_sh = tmp_path / "env.sh"
  env_sh.write_text(
      'PROJECT=proj\nZONE=europe-west4-a\nTPU_NAME=tpu1\nACCELERATOR=v3-32\n'
      'RUNTIME_VERSION=tpu-ubuntu2204-base\nBUCKET=gs://bkt\n'
      'TFDS_DATA_DIR=gs://bkt/tfds\nWORKDIR_ROOT=gs://bkt/s4l\n')
  log = tmp_path / "gcloud.log"
  e = dict(os.environ, GCLOUD=str(fake), S4L_ENV=str(env_sh), FAKE_LOG=str(log),
           FAKE_HOME=str(home), POLL_S="0", STOP_GRACE_S="5")
  return dict(env=e, log=log, home=home, tmp=tmp_path)


def _run(args, env, check=True):
  r = subprocess.run(["bash", *map(str, args)], env=env, cwd=REPO, capture_output=True,
                     text=True, timeout=30)
  if check:
    assert r.returncode == 0, r.stdout + r.stderr
  return r


def _calls(log):
  if not log.exists():
    return []
  return [call.split("\x1f") for call in log.read_text().split("\x1e")[:-1]]


def test_scripts_parse_and_have_header():
  names = {p.name for p in SCRIPTS}
  for want in ("env.example.sh", "create_tpu.sh", "setup_tpu.sh", "run.sh", "sweep.sh",
               "logs.sh", "stop.sh", "delete_tpu.sh", "prepare_data.sh", "local_cpu.sh"):
    assert want in names
  for p in SCRIPTS:
    subprocess.run(["bash", "-n", str(p)], check=True)
    text = p.read_text()
    assert text.startswith("#!/usr/bin/env bash\n"), p
    if p.name != "env.example.sh":
      assert "set -euo pipefail" in text, p
  assert "env.sh" in (LAUNCH / ".gitignore").read_text().split()
  assert (LAUNCH / "README.md").exists()


def test_missing_env_file_is_a_clear_error(env):
  e = dict(env["env"], S4L_ENV=str(env["tmp"] / "nope.sh"))
  for script, args in (("run.sh", ["configs/s4l_rotation.py", "r1"]), ("stop.sh", ["r1"]),
                       ("create_tpu.sh", []), ("setup_tpu.sh", [])):
    r = _run([LAUNCH / script, *args], e, check=False)
    assert r.returncode != 0
    assert "env.example.sh" in r.stderr and "not found" in r.stderr, r.stderr
  assert _calls(env["log"]) == []


def test_usage_on_wrong_args(env):
  for script, args in (("local_cpu.sh", []), ("run.sh", []), ("run.sh", ["configs/vat.py"]),
                       ("stop.sh", []), ("logs.sh", []), ("sweep.sh", ["configs/vat.py"])):
    r = _run([LAUNCH / script, *args], env["env"], check=False)
    assert r.returncode != 0, (script, args)
    assert "usage:" in r.stderr, (script, r.stderr)
  assert _calls(env["log"]) == []


def test_run_then_stop(env):
  e = env["env"]
  r = _run([LAUNCH / "run.sh", "configs/s4l_rotation.py:labels=10pct", "rot10",
            "--config.total_steps=5"], e)
  calls = _calls(env["log"])
  assert len(calls) == 1
  argv = calls[0]
  assert argv[:4] == ["compute", "tpus", "tpu-vm", "ssh"] and "tpu1" in argv
  assert "--worker=all" in argv and "--zone=europe-west4-a" in argv and "--project=proj" in argv
  cmd = next(a for a in argv if a.startswith("--command="))
  assert "--config=configs/s4l_rotation.py:labels=10pct" in cmd
  assert "--workdir=gs://bkt/s4l/rot10" in cmd
  assert "--jax_distributed" in cmd and "--config.total_steps=5" in cmd
  assert "nohup" in cmd and "TFDS_DATA_DIR=gs://bkt/tfds" in cmd

  # The remote snippet ran locally: a PID file and log exist and the process lives.
  run_dir = env["home"] / "s4l_runs" / "rot10"
  pidfiles = list(run_dir.glob("worker*.pid"))
  assert len(pidfiles) == 1 and list(run_dir.glob("worker*.log")), r.stdout + r.stderr
  pid = int(pidfiles[0].read_text())
  os.kill(pid, 0)
  # /proc/PID/cmdline reads empty while the process is inside execve (nohup -> python), so poll.
  cmdline = b""
  for _ in range(50):
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    if b"main.py" in cmdline:
      break
    time.sleep(0.1)
  log_text = "".join(p.read_text() for p in run_dir.glob("worker*.log"))
  assert b"main.py" in cmdline, (cmdline, log_text)

  # A second run while one is alive is refused.
  r2 = _run([LAUNCH / "run.sh", "configs/vat.py", "other"], e, check=False)
  assert r2.returncode != 0 and "still alive" in r2.stderr

  _run([LAUNCH / "stop.sh", "rot10"], e)
  argv = _calls(env["log"])[-1]
  assert "--worker=all" in argv and "ssh" in argv
  assert any("kill -TERM" in a for a in argv)
  for _ in range(50):
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      break
    time.sleep(0.1)
  else:
    pytest.fail("stop.sh did not stop the run")
  assert not list(run_dir.glob("worker*.pid"))


def test_create_tpu(env):
  _run([LAUNCH / "create_tpu.sh", "--spot"], env["env"])
  calls = _calls(env["log"])
  create = calls[0]
  assert create[:4] == ["compute", "tpus", "queued-resources", "create"]
  assert "--spot" in create and "--node-id=tpu1" in create
  assert "--accelerator-type=v3-32" in create
  assert "--runtime-version=tpu-ubuntu2204-base" in create
  assert calls[-1][:4] == ["compute", "tpus", "queued-resources", "describe"]

  env["log"].unlink()
  _run([LAUNCH / "create_tpu.sh"], env["env"])
  create = _calls(env["log"])[0]
  assert create[:4] == ["compute", "tpus", "tpu-vm", "create"] and "--spot" not in create
  assert "--version=tpu-ubuntu2204-base" in create


def test_setup_copies_to_all_workers(env):
  _run([LAUNCH / "setup_tpu.sh"], dict(env["env"], FAKE_EXEC="0"))
  calls = _calls(env["log"])
  scp = next(c for c in calls if c[3] == "scp")
  assert "--recurse" in scp and "--worker=all" in scp and "tpu1:~/" in scp
  install = calls[-1]
  assert "--worker=all" in install
  assert any("pip" in a and ".[tf]" in a and "jax\\[tpu\\]" in a for a in install)


def test_sweep_runs_each_variant(env):
  _run([LAUNCH / "sweep.sh", "configs/supervised.py", "sup", "labels=10pct", "labels=1pct",
        "--", "--config.total_steps=3"], dict(env["env"], FAKE_SLEEP="0"))
  cmds = [a for c in _calls(env["log"]) for a in c if "main.py" in a and a.startswith("--command")]
  assert len(cmds) == 2
  assert "--config=configs/supervised.py:labels=10pct" in cmds[0]
  assert "--workdir=gs://bkt/s4l/sup_labels-10pct" in cmds[0]
  assert "--workdir=gs://bkt/s4l/sup_labels-1pct" in cmds[1]
  for pidf in (env["home"] / "s4l_runs").glob("*/worker*.pid"):  # clean up the stand-ins
    try:
      os.kill(int(pidf.read_text()), 9)
    except ProcessLookupError:
      pass
