#!/usr/bin/env bash
# Creates the TPU slice described in launch/env.sh and waits until it is usable.
#
#   launch/create_tpu.sh            # on-demand: gcloud compute tpus tpu-vm create
#   launch/create_tpu.sh --queued   # queued resource (waits for capacity)
#   launch/create_tpu.sh --spot     # queued resource on spot capacity (preemptible; run.sh resumes)
#   launch/create_tpu.sh --dry_run  # prints the gcloud commands, runs nothing
#
# RUNTIME_VERSION defaults to the one for ACCELERATOR's generation (common.sh RUNTIME_VERSIONS).
# Env: POLL_S (default 30) between state checks, WAIT_TIMEOUT_S (default 0 = wait forever).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 [--queued] [--spot] [--dry_run]" >&2; exit 2; }
queued=0 spot=0
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
for a in "$@"; do
  case "${a}" in
    --queued) queued=1 ;;
    --spot) queued=1; spot=1 ;;
    -h|--help) usage ;;
    *) echo "unknown argument: ${a}" >&2; usage ;;
  esac
done
load_env PROJECT ZONE TPU_NAME ACCELERATOR
resolve_runtime_version

POLL_S="${POLL_S:-30}"
WAIT_TIMEOUT_S="${WAIT_TIMEOUT_S:-0}"

if (( queued )); then
  extra=() kind="on-demand"
  if (( spot )); then extra+=(--spot); kind="spot"; fi
  echo "Creating queued resource ${QUEUED_RESOURCE_ID} (node ${TPU_NAME}, ${ACCELERATOR}, ${kind})"
  gcloud_tpu queued-resources create "${QUEUED_RESOURCE_ID}" --node-id="${TPU_NAME}" \
    --accelerator-type="${ACCELERATOR}" --runtime-version="${RUNTIME_VERSION}" ${extra[@]+"${extra[@]}"}
  describe=(queued-resources describe "${QUEUED_RESOURCE_ID}" "--format=value(state.state)")
  want=ACTIVE
else
  echo "Creating TPU VM ${TPU_NAME} (${ACCELERATOR}, ${RUNTIME_VERSION})"
  gcloud_tpu tpu-vm create "${TPU_NAME}" --accelerator-type="${ACCELERATOR}" \
    --version="${RUNTIME_VERSION}"
  describe=(tpu-vm describe "${TPU_NAME}" "--format=value(state)")
  want=READY
fi

start=${SECONDS}
while true; do
  state="$(gcloud_tpu "${describe[@]}" 2>/dev/null || true)"
  state="${state//[[:space:]]/}"
  if (( DRY_RUN )); then exit 0; fi
  echo "$(date +%H:%M:%S) state: ${state:-unknown}"
  case "${state}" in
    "${want}") break ;;
    FAILED|SUSPENDED|SUSPENDING|DELETING|PREEMPTED|TERMINATED)
      die "${TPU_NAME} is ${state}; delete it (launch/delete_tpu.sh) and create again." ;;
  esac
  if (( WAIT_TIMEOUT_S > 0 && SECONDS - start > WAIT_TIMEOUT_S )); then
    die "still not ${want} after ${WAIT_TIMEOUT_S}s (state: ${state:-unknown})."
  fi
  sleep "${POLL_S}"
done
echo "${TPU_NAME} is ${want}. Next: launch/setup_tpu.sh"
