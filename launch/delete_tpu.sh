#!/usr/bin/env bash
# Deletes the TPU slice (and its queued resource, if it was created with --queued/--spot).
# Checkpoints and logs in $WORKDIR_ROOT (GCS) are kept; the per-worker log files are lost.
#
#   launch/delete_tpu.sh [--yes] [--dry_run]   (--dry_run: prints the gcloud commands, runs nothing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 [--yes] [--dry_run]" >&2; exit 2; }
yes=0
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
for a in "$@"; do
  case "${a}" in --yes|-y) yes=1 ;; *) usage ;; esac
done
load_env PROJECT ZONE TPU_NAME

if (( ! yes && ! DRY_RUN )); then
  read -r -p "Delete TPU ${TPU_NAME} in ${ZONE} (project ${PROJECT})? [y/N] " answer
  [[ "${answer}" == [yY]* ]] || { echo "Nothing deleted."; exit 1; }
fi
if gcloud_tpu queued-resources describe "${QUEUED_RESOURCE_ID}" --format="value(name)" >/dev/null 2>&1; then
  echo "Deleting queued resource ${QUEUED_RESOURCE_ID} and its node ${TPU_NAME}"
  gcloud_tpu queued-resources delete "${QUEUED_RESOURCE_ID}" --force --quiet
else
  echo "Deleting TPU VM ${TPU_NAME}"
  gcloud_tpu tpu-vm delete "${TPU_NAME}" --quiet
fi
