#!/usr/bin/env bash
# Runs one training run to its end across spot preemptions: starts it with run.sh, waits until
# main.py on worker 0 has ended, and re-runs the *same* command (it resumes from the latest
# checkpoint in $WORKDIR_ROOT/RUN_NAME) until it exits with status 0.
#
#   launch/run_until_done.sh [--spot|--queued] [--dry_run] CONFIG[:ARGS] RUN_NAME [--config.key=value ...]
#   launch/run_until_done.sh --spot configs/s4l_rotation.py:labels=10pct s4l_rot_10pct
#
# Before each attempt: if the node $TPU_NAME is not READY (preempted, its queued resource
# suspended, or deleted) it is recreated: delete_tpu.sh --yes, create_tpu.sh [--spot|--queued],
# setup_tpu.sh. Worker 0's main.py exit status then decides: 0 -> finished, stop; stopped by
# stop.sh -> stop; anything else (SIGTERM save on preemption, crash, host lost) -> retry, at most
# MAX_RETRIES (default 5) times. Polls every POLL_S (default 300) seconds; keep it alive with
# nohup/tmux on your workstation. --dry_run prints the gcloud commands of one attempt and of
# the recreation, and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  echo "usage: $0 [--spot|--queued] [--dry_run] CONFIG[:ARGS] RUN_NAME [--config.key=value ...]" >&2
  echo "  e.g. $0 --spot configs/s4l_rotation.py:labels=10pct s4l_rot_10pct" >&2
  exit 2
}
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
create_flags=()
while [[ $# -gt 0 && ( "$1" == --spot || "$1" == --queued ) ]]; do create_flags+=("$1"); shift; done
[[ $# -ge 2 ]] || usage
run_args=("$@")
run_name="$2"
check_run_name "${run_name}"
load_env PROJECT ZONE TPU_NAME TFDS_DATA_DIR WORKDIR_ROOT
POLL_S="${POLL_S:-300}"
MAX_RETRIES="${MAX_RETRIES:-5}"
[[ "${MAX_RETRIES}" =~ ^[0-9]+$ ]] || die "MAX_RETRIES must be a whole number, got '${MAX_RETRIES}'."
dry=()
(( ! DRY_RUN )) || dry=(--dry_run)

log() { echo "$(date -u +%FT%TZ) run_until_done ${run_name}: $*"; }

# The node's state (READY when usable), empty when it does not exist.
node_state() {
  local state
  state="$(gcloud_tpu tpu-vm describe "${TPU_NAME}" "--format=value(state)" 2>/dev/null || true)"
  echo "${state//[[:space:]]/}"
}

recreate_slice() {
  # delete_tpu.sh fails when there is nothing left to delete; create_tpu.sh then reports real errors.
  "${LAUNCH_DIR}/delete_tpu.sh" --yes ${dry[@]+"${dry[@]}"} || log "nothing to delete"
  "${LAUNCH_DIR}/create_tpu.sh" ${create_flags[@]+"${create_flags[@]}"} ${dry[@]+"${dry[@]}"}
  "${LAUNCH_DIR}/setup_tpu.sh" ${dry[@]+"${dry[@]}"}
}

# Remote snippet printing worker 0's outcome: RUNNING, STOPPED, EXIT=<status> or EXIT=none.
poll_cmd="${REMOTE_WORKER_ID}
F=\"\$HOME/${RUNS_DIR}/${run_name}/worker\$W\"
if [ -e \"\$F.stopped\" ]; then echo STOPPED
elif [ -s \"\$F.pid\" ] && kill -0 \$(cat \"\$F.pid\") 2>/dev/null; then echo RUNNING
else
  [ -s \"\$F.exit\" ] || sleep 2
  echo EXIT=\$(cat \"\$F.exit\" 2>/dev/null || echo none)
fi"

# wait_for_end : polls worker 0 until its run has ended; prints STOPPED, EXIT=<status> or LOST.
wait_for_end() {
  local out
  while true; do
    (( DRY_RUN )) || sleep "${POLL_S}"
    if out="$(tpu_ssh 0 "${poll_cmd}" 2>/dev/null)"; then
      (( ! DRY_RUN )) || { echo "EXIT=none"; return; }
      case "${out}" in
        *RUNNING*) continue ;;
        *STOPPED*|*EXIT=*) echo "${out##*$'\n'}"; return ;;
      esac
    fi
    [[ "$(node_state)" == READY ]] || { echo LOST; return; }  # else a passing ssh failure
  done
}

if (( DRY_RUN )); then
  node_state >/dev/null
  "${LAUNCH_DIR}/run.sh" --dry_run "${run_args[@]}"
  wait_for_end >/dev/null
  echo "# then, on an exit status other than 0 and at most ${MAX_RETRIES} times: if the node is not READY,"
  recreate_slice
  echo "# and the same run.sh again."
  exit 0
fi

retry=0
while true; do
  state="$(node_state)"
  if [[ "${state}" != READY ]]; then
    log "node ${TPU_NAME} is ${state:-missing}: recreating it"
    recreate_slice
  fi
  "${LAUNCH_DIR}/run.sh" "${run_args[@]}" || log "run.sh failed (status $?)"
  outcome="$(wait_for_end)"
  case "${outcome}" in
    EXIT=0) log "finished (exit status 0 on worker 0)"; exit 0 ;;
    STOPPED) die "run ${run_name} was stopped with stop.sh; not re-running it." ;;
  esac
  (( retry < MAX_RETRIES )) || die "run ${run_name} ended (${outcome}) and all ${MAX_RETRIES} retries are used; giving up."
  retry=$((retry + 1))
  state="$(node_state)"
  log "ended (${outcome}, node ${state:-missing}); retry ${retry}/${MAX_RETRIES}: re-running the same command"
done
