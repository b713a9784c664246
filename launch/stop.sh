#!/usr/bin/env bash
# Stops a run on every worker via the PID files run.sh wrote.
#
#   launch/stop.sh [--dry_run] RUN_NAME
#
# Marks the run as stopped (worker<N>.stopped, so run_until_done.sh does not re-run it), sends
# SIGTERM (the trainer saves a checkpoint of the current step), waits up to STOP_GRACE_S
# (default 120) seconds, then SIGKILL. Re-run launch/run.sh with the same arguments to resume.
# --dry_run prints the gcloud command and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 [--dry_run] RUN_NAME" >&2; exit 2; }
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
[[ $# -eq 1 ]] || usage
run_name="$1"
check_run_name "${run_name}"
load_env PROJECT ZONE TPU_NAME

grace="${STOP_GRACE_S:-120}"
[[ "${grace}" =~ ^[0-9]+$ ]] || die "STOP_GRACE_S must be a number of seconds."
run_dir="\$HOME/${RUNS_DIR}/${run_name}"
remote="${REMOTE_WORKER_ID}
found=0
for f in \"${run_dir}\"/worker*.pid; do
  [ -e \"\$f\" ] || continue
  found=1
  touch \"\${f%.pid}.stopped\"
  p=\$(cat \"\$f\")
  if kill -0 \"\$p\" 2>/dev/null && grep -q main.py /proc/\"\$p\"/cmdline 2>/dev/null; then
    kill -TERM \"\$p\"
    for i in \$(seq ${grace}); do kill -0 \"\$p\" 2>/dev/null || break; sleep 1; done
    if kill -0 \"\$p\" 2>/dev/null; then kill -KILL \"\$p\"; echo \"worker \$W: pid \$p killed (SIGKILL)\";
    else echo \"worker \$W: pid \$p stopped\"; fi
  else
    echo \"worker \$W: pid \$p was not running\"
  fi
  rm -f \"\$f\"
done
[ \$found = 1 ] || echo \"worker \$W: no PID file for run ${run_name}\""
tpu_ssh all "${remote}"
(( ! DRY_RUN )) || exit 0
echo "Stopped ${run_name}. Resume with the same launch/run.sh command."
