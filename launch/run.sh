#!/usr/bin/env bash
# Starts one training run on every worker of the TPU slice (in the background, under nohup).
#
#   launch/run.sh [--dry_run] CONFIG[:ARGS] RUN_NAME [--config.key=value ...]
#   launch/run.sh configs/s4l_rotation.py:labels=10pct s4l_rot_10pct
#
# Workdir: $WORKDIR_ROOT/RUN_NAME (GCS, seen by all hosts). The run name is explicit, so after
# a preemption (or stop.sh) the *same command* resumes from the latest Orbax checkpoint.
# Per worker: log ~/$RUNS_DIR/RUN_NAME/worker<N>.log, PID file worker<N>.pid (see logs.sh, stop.sh),
# and, once main.py has ended, its exit status in worker<N>.exit (see run_until_done.sh).
# CONFIG may be given as `s4l_rotation.py[:ARGS]`; it is then looked up in configs/.
# FORCE=1 skips the check that no other run is alive on the workers. --dry_run prints the gcloud
# command (with the remote script) and runs nothing.
# First, here, `main.py --check_only` checks the config as main.py would before creating
# anything (one line; a bad config stops here, dry run or not), with $LOCAL_PYTHON (default
# python3) when it can import the package; otherwise it says the check was skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  echo "usage: $0 [--dry_run] CONFIG[:ARGS] RUN_NAME [--config.key=value ...]" >&2
  echo "  e.g. $0 configs/s4l_rotation.py:labels=10pct s4l_rot_10pct" >&2
  exit 2
}
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
[[ $# -ge 2 ]] || usage
config="$1" run_name="$2"
shift 2
config="$(resolve_config "${config}")"
check_run_name "${run_name}"
for a in "$@"; do
  [[ "${a}" == --* ]] || die "extra arguments must be flags such as --config.key=value, got '${a}'."
done
load_env PROJECT ZONE TPU_NAME TFDS_DATA_DIR WORKDIR_ROOT

workdir="${WORKDIR_ROOT%/}/${run_name}"
check_config_locally "${config}" "${workdir}" "$@"
train_cmd="\"\$HOME/${REMOTE_VENV}/bin/python\" $(quote main.py "--config=${config}" "--workdir=${workdir}" --jax_distributed "$@")"
run_dir="\$HOME/${RUNS_DIR}/${run_name}"
# The wrapper records main.py's PID (for stop.sh) and, when it ends, its exit status.
record_exit='"$@" & echo $! > "$0.pid"; wait $!; echo $? > "$0.exit"'

remote="set -e
cd ~/$(quote "${REMOTE_DIR}")
${REMOTE_WORKER_ID}
if [ \"${FORCE:-0}\" != 1 ]; then
  for f in \"\$HOME/${RUNS_DIR}\"/*/*.pid; do
    [ -e \"\$f\" ] || continue
    p=\$(cat \"\$f\")
    if kill -0 \"\$p\" 2>/dev/null && grep -q main.py /proc/\"\$p\"/cmdline 2>/dev/null; then
      echo \"worker \$W: a run is still alive (\$f, pid \$p); stop it first with launch/stop.sh, or FORCE=1\" >&2
      exit 3
    fi
  done
fi
mkdir -p \"${run_dir}\"
F=\"${run_dir}/worker\$W\"
rm -f \"\$F.pid\" \"\$F.exit\" \"\$F.stopped\"
export TFDS_DATA_DIR=$(quote "${TFDS_DATA_DIR}")
echo \"=== \$(date -u +%FT%TZ) worker \$W starts run ${run_name}\" >> \"\$F.log\"
nohup bash -c $(quote "${record_exit}") \"\$F\" ${train_cmd} >> \"\$F.log\" 2>&1 < /dev/null &
for i in \$(seq 100); do [ -s \"\$F.pid\" ] && break; sleep 0.1; done
echo \"worker \$W: pid \$(cat \"\$F.pid\"), log \$F.log\""

echo "Run ${run_name}: ${config} $* -> ${workdir}"
tpu_ssh all "${remote}"
(( ! DRY_RUN )) || exit 0
echo "Started on all workers of ${TPU_NAME}. Follow: launch/logs.sh ${run_name}   Stop: launch/stop.sh ${run_name}"
