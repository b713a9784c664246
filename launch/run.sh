#!/usr/bin/env bash
# Starts one training run on every worker of the TPU slice (in the background, under nohup).
#
#   launch/run.sh CONFIG[:ARGS] RUN_NAME [--config.key=value ...]
#   launch/run.sh configs/s4l_rotation.py:labels=10pct s4l_rot_10pct
#
# Workdir: $WORKDIR_ROOT/RUN_NAME (GCS, seen by all hosts). The run name is explicit, so after
# a preemption (or stop.sh) the *same command* resumes from the latest Orbax checkpoint.
# Per worker: log ~/$RUNS_DIR/RUN_NAME/worker<N>.log, PID file worker<N>.pid (see logs.sh, stop.sh).
# CONFIG may be given as `s4l_rotation.py[:ARGS]`; it is then looked up in configs/.
# FORCE=1 skips the check that no other run is alive on the workers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  echo "usage: $0 CONFIG[:ARGS] RUN_NAME [--config.key=value ...]" >&2
  echo "  e.g. $0 configs/s4l_rotation.py:labels=10pct s4l_rot_10pct" >&2
  exit 2
}
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
train_cmd="\"\$HOME/${REMOTE_VENV}/bin/python\" $(quote main.py "--config=${config}" "--workdir=${workdir}" --jax_distributed "$@")"
run_dir="\$HOME/${RUNS_DIR}/${run_name}"

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
LOG=\"${run_dir}/worker\$W.log\"
export TFDS_DATA_DIR=$(quote "${TFDS_DATA_DIR}")
echo \"=== \$(date -u +%FT%TZ) worker \$W starts run ${run_name}\" >> \"\$LOG\"
nohup ${train_cmd} >> \"\$LOG\" 2>&1 < /dev/null &
echo \$! > \"${run_dir}/worker\$W.pid\"
echo \"worker \$W: pid \$!, log \$LOG\""

echo "Run ${run_name}: ${config} $* -> ${workdir}"
tpu_ssh all "${remote}"
echo "Started on all workers of ${TPU_NAME}. Follow: launch/logs.sh ${run_name}   Stop: launch/stop.sh ${run_name}"
