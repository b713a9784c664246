"""launch/ scripts: syntax, and the gcloud command lines they build (with a fake gcloud).

The fake gcloud records its argv; for `tpu-vm ssh` it also runs the --command locally with
HOME set to a temp dir, so the remote shell snippets (nohup, PID files, kill) really execute
against a stand-in `python` that just sleeps. With FAKE_STATE (a file holding the node's state)
it also plays a slice that `create` makes READY, `delete` removes, and a preemption takes away
(ssh then fails); with FAKE_PLAN (a file of exit statuses, one per start, or `preempt`) the
stand-in trainer ends as planned. No network, no real gcloud or TPU, no training.
"""
import os
import pathlib
import shlex
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Records argv (args separated by \x1f, calls ended by \x1e), then fakes behaviour.
( IFS=$'\x1f'; printf '%s\x1e' "$*" ) >> "$FAKE_LOG"
node_state() { if [ -n "${FAKE_STATE:-}" ]; then cat "$FAKE_STATE"; else echo READY; fi; }
case "$3 $4" in
  "tpu-vm describe") s=$(node_state); [ -n "$s" ] || exit 1; echo "$s"; exit 0 ;;
  "queued-resources describe")
    s=$(node_state); [ -n "$s" ] || exit 1
    if [ "$s" = READY ]; then echo ACTIVE; else echo SUSPENDED; fi; exit 0 ;;
  *" create") [ -z "${FAKE_STATE:-}" ] || echo READY > "$FAKE_STATE"; exit 0 ;;
  *" delete") [ -z "${FAKE_STATE:-}" ] || : > "$FAKE_STATE"; exit 0 ;;
  "tpu-vm scp") [ -z "${FAKE_STATE:-}" ] || cp -r "$6" "$FAKE_HOME/" ;;
  "tpu-vm ssh") [ "$(node_state)" = READY ] || exit 255 ;;
esac
if [ "$3" = tpu-vm ] && [ "$4" = ssh ] && [ "${FAKE_EXEC:-1}" = 1 ]; then
  for a in "$@"; do
    case "$a" in --command=*) HOME="$FAKE_HOME" S4L_WORKER_ID=0 exec bash -c "${a#--command=}" ;; esac
  done
fi
exit 0
"""

STAND_IN_PYTHON = r"""#!/usr/bin/env bash
# Stand-in trainer: exits on SIGTERM like main.py; `-c` answers setup_tpu.sh's version check.
[ "$1" = -c ] && { echo 0.0; exit 0; }
if [ -n "${FAKE_PLAN:-}" ] && [ -s "$FAKE_PLAN" ]; then
  outcome=$(head -n 1 "$FAKE_PLAN"); sed -i 1d "$FAKE_PLAN"
  if [ "$outcome" = preempt ]; then echo PREEMPTED > "$FAKE_STATE"; exit 143; fi
  exit "$outcome"
fi
trap 'kill $!; exit 0' TERM
sleep "${FAKE_SLEEP:-60}" & wait
echo "top-1 1.00%"
"""

ENV_SH = ('PROJECT=proj\nZONE=europe-west4-a\nTPU_NAME=tpu1\nACCELERATOR=v3-32\n'
          'BUCKET=gs://bkt\nTFDS_DATA_DIR=gs://bkt/tfds\nWORKDIR_ROOT=gs://bkt/s4l\n')


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
  py.write_text(STAND_IN_PYTHON)
  py.chmod(0o755)
  pip = venv_bin / "pip"
  pip.write_text("#!/usr/bin/env bash\n")
  pip.chmod(0o755)
  env_sh = tmp_path / "env.sh"
  env_sh.write_text(ENV_SH + "RUNTIME_VERSION=tpu-ubuntu2204-base\n")
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
               "logs.sh", "stop.sh", "delete_tpu.sh", "prepare_data.sh", "local_cpu.sh",
               "run_until_done.sh"):
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


@pytest.mark.parametrize("accelerator, runtime", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
def test_runtime_version_from_accelerator(env, accelerator, runtime):
  env_sh = env["tmp"] / "env_no_runtime.sh"
  env_sh.write_text(ENV_SH + f"ACCELERATOR={accelerator}\n")
  e = dict(env["env"], S4L_ENV=str(env_sh))
  _run([LAUNCH / "create_tpu.sh", "--spot"], e)
  create = _calls(env["log"])[0]
  assert f"--accelerator-type={accelerator}" in create
  assert f"--runtime-version={runtime}" in create


def test_unknown_accelerator_is_a_one_line_error(env):
  env_sh = env["tmp"] / "env_unknown.sh"
  env_sh.write_text(ENV_SH + "ACCELERATOR=v9z-8\n")
  r = _run([LAUNCH / "create_tpu.sh"], dict(env["env"], S4L_ENV=str(env_sh)), check=False)
  assert r.returncode != 0
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr
  assert "ACCELERATOR='v9z-8'" in r.stderr and "v6e" in r.stderr and "RUNTIME_VERSION" in r.stderr
  assert _calls(env["log"]) == []


def _printed_commands(stdout, fake):
  """The dry run's gcloud lines, each split as bash would (they use $'...' quoting)."""
  lines = [l for l in stdout.splitlines() if l.startswith(shlex.quote(str(fake)))]
  split = 'for l in "$@"; do eval "set -- $l"; ( IFS=$\'\\x1f\'; printf "%s\\x1e" "$*" ); done'
  out = subprocess.run(["bash", "-c", split, "bash", *lines], capture_output=True, text=True,
                       check=True).stdout
  return [c.split("\x1f")[1:] for c in out.split("\x1e")[:-1]]


@pytest.mark.parametrize("script, args", [
    ("create_tpu.sh", ["--spot"]), ("create_tpu.sh", []), ("delete_tpu.sh", ["--yes"]),
    ("run.sh", ["configs/supervised.py:labels=10pct", "sup10", "--config.total_steps=3"]),
    ("stop.sh", ["sup10"]), ("logs.sh", ["sup10", "1"])])
def test_dry_run_prints_the_calls_in_order_and_calls_nothing(env, script, args):
  e = dict(env["env"], FAKE_EXEC="0")
  dry = _run([LAUNCH / script, "--dry_run", *args], e)
  assert _calls(env["log"]) == []
  printed = _printed_commands(dry.stdout, env["env"]["GCLOUD"])
  _run([LAUNCH / script, *args], e)
  assert printed == _calls(env["log"]) and printed, dry.stdout


def test_dry_run_of_setup_and_run_until_done_calls_nothing(env):
  e = dict(env["env"], FAKE_EXEC="0")
  setup = _printed_commands(_run([LAUNCH / "setup_tpu.sh", "--dry_run"], e).stdout,
                            e["GCLOUD"])
  assert [c[2:4] for c in setup] == [["tpu-vm", "ssh"], ["tpu-vm", "scp"], ["tpu-vm", "ssh"]]
  loop = _printed_commands(_run([LAUNCH / "run_until_done.sh", "--dry_run", "--spot",
                                 "configs/vat.py", "vat1"], e).stdout, e["GCLOUD"])
  assert [c[2:4] for c in loop] == [
      ["tpu-vm", "describe"], ["tpu-vm", "ssh"], ["tpu-vm", "ssh"],  # state, run.sh, poll
      ["queued-resources", "describe"], ["queued-resources", "delete"],  # recreation
      ["queued-resources", "create"], ["queued-resources", "describe"],
      ["tpu-vm", "ssh"], ["tpu-vm", "scp"], ["tpu-vm", "ssh"]]
  assert "--spot" in loop[5]
  assert _calls(env["log"]) == []


def _run_until_done(env, plan, max_retries):
  state = env["tmp"] / "state"
  state.write_text("READY\n")
  plan_file = env["tmp"] / "plan"
  plan_file.write_text("".join(f"{p}\n" for p in plan))
  e = dict(env["env"], FAKE_STATE=str(state), FAKE_PLAN=str(plan_file),
           MAX_RETRIES=str(max_retries), REMOTE_PYTHON="bash")
  r = _run([LAUNCH / "run_until_done.sh", "--spot", "configs/supervised.py:labels=10pct",
            "sup10", "--config.total_steps=3"], e, check=False)
  calls = _calls(env["log"])
  starts = [a for c in calls for a in c if a.startswith("--command=") and "nohup" in a]
  return r, calls, starts


def test_run_until_done_retries_preempted_runs_until_success(env):
  r, calls, starts = _run_until_done(env, ["1", "preempt", "0"], max_retries=5)
  assert r.returncode == 0, r.stdout + r.stderr
  assert len(starts) == 3 and len(set(starts)) == 1  # the same command each time
  assert "--workdir=gs://bkt/s4l/sup10" in starts[0]
  out = r.stdout
  assert "ended (EXIT=1, node READY); retry 1/5" in out
  assert "ended (LOST, node PREEMPTED); retry 2/5" in out
  assert "node tpu1 is PREEMPTED: recreating it" in out
  assert "finished (exit status 0 on worker 0)" in out
  creates = [c for c in calls if c[3] == "create"]
  assert len(creates) == 1 and "--spot" in creates[0]  # only after the preemption


def test_run_until_done_gives_up_after_the_retry_limit(env):
  r, _, starts = _run_until_done(env, ["1", "1", "1", "0"], max_retries=2)
  assert r.returncode != 0
  assert len(starts) == 3, r.stdout + r.stderr
  assert "all 2 retries are used" in r.stderr


@pytest.mark.slow
def test_run_until_done_does_not_rerun_a_stopped_run(env):
  e = dict(env["env"], POLL_S="0.2")
  loop = subprocess.Popen(["bash", str(LAUNCH / "run_until_done.sh"), "configs/vat.py", "vat1"],
                          env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  run_dir = env["home"] / "s4l_runs" / "vat1"
  for _ in range(100):
    if (run_dir / "worker0.pid").exists():
      break
    time.sleep(0.1)
  _run([LAUNCH / "stop.sh", "vat1"], e)
  out, err = loop.communicate(timeout=30)
  assert loop.returncode != 0 and "stopped with stop.sh" in err, out + err
  assert (run_dir / "worker0.stopped").exists()
  assert (run_dir / "worker0.exit").read_text() == "0\n"  # the stand-in's status after SIGTERM
  assert sum("nohup" in a for c in _calls(env["log"]) for a in c) == 1


@pytest.mark.slow
def test_run_checks_the_config_locally_before_anything(env):
  """The same one-line check main.py makes, here, dry run or not: a bad config calls nothing."""
  e = dict(env["env"], LOCAL_PYTHON=sys.executable, FAKE_EXEC="0")
  bad = _run([LAUNCH / "run.sh", "--dry_run", "configs/fixmatch.py", "fm",
              "--config.loss.threshold=1.5"], e, check=False)
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1] == (
      "error: config refused: ERROR: loss.threshold=1.5 must be in [0, 1] (objective fixmatch)")
  assert _calls(env["log"]) == []
  good = _run([LAUNCH / "run.sh", "--dry_run", "configs/moam.py", "moam"], e)
  assert "config OK: moam on imagenet2012, stages step1, step2, step3" in good.stdout
  # A python that cannot run main.py: the check is skipped, with a note.
  skipped = _run([LAUNCH / "run.sh", "--dry_run", "configs/vat.py", "vat"],
                 dict(e, LOCAL_PYTHON="no-such-python"))
  assert "config not checked locally" in skipped.stderr
