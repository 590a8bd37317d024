#!/usr/bin/env bash
# Re-runs dapter-tf's fault audit (../shared/audit/cases.tsv): builds the fixtures under $AUDIT, runs
# every case in $REPO, writes $AUDIT/results.tsv and prints a summary.
#
#   REPO=/path/to/clone AUDIT=/path/to/scratch bench/audit/run_audit.sh [--cases=id,id,...] [--no-extras] [--list]
#
# REPO: a clone of dapter-tf; its .venv/bin/python is used if there is one, else python3
#       (PY=... overrides). Commands run in $REPO as `$PY -m MODULE` with PYTHONPATH=$REPO, so the clone's
#       own code is what runs (REWRITE=0: run `.venv/bin/dapter-*` as written instead).
# AUDIT: a scratch folder: must not exist or be empty (FRESH=1 wipes it first). $AUDIT/full becomes a
#       2 MB tmpfs (root needed) and is unmounted when this script ends, however it ends.
# MW_WAIT_FLAG: the multi-worker peer-wait timeout flag to add (e.g. --peer_timeout_s=30); default: found
#       in `dapter-train-target --helpfull` (a flag naming peer/cluster/worker and timeout/wait), else none.
# CASES_TSV: default ../shared/audit/cases.tsv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${REPO:?set REPO to the clone to audit}"
: "${AUDIT:?set AUDIT to a scratch folder}"
REPO="$(cd "$REPO" && pwd)"
mkdir -p "$AUDIT"
AUDIT="$(cd "$AUDIT" && pwd)"
if [[ -z "${PY:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
export REPO AUDIT PY

list_only=0
for arg in "$@"; do [[ "$arg" == "--list" ]] && list_only=1; done
if [[ $list_only == 1 ]]; then exec "$PY" "$HERE/audit.py" "$@"; fi

if [[ $(id -u) != 0 ]]; then echo "error: run as root (the disk-full cases mount a tmpfs)" >&2; exit 1; fi
if ! command -v strace >/dev/null; then
  echo "strace missing: installing it" >&2
  apt-get update -qq && apt-get install -y -qq strace >/dev/null
fi
for tool in timeout strace /usr/bin/time mount umount; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

if mountpoint -q "$AUDIT/full" 2>/dev/null; then umount "$AUDIT/full"; fi
if [[ -n "$(ls -A "$AUDIT")" ]]; then
  if [[ "${FRESH:-0}" == 1 ]]; then
    find "$AUDIT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  else
    echo "error: $AUDIT is not empty (FRESH=1 wipes it)" >&2; exit 1
  fi
fi
mkdir -p "$AUDIT/full" "$AUDIT/w" "$AUDIT/logs"
mount -t tmpfs -o size=2m tmpfs "$AUDIT/full"
cleanup() { mountpoint -q "$AUDIT/full" && umount -l "$AUDIT/full" || true; }
trap cleanup EXIT

start=$(date +%s)
"$PY" "$HERE/audit.py" "$@" > >(tee "$AUDIT/summary.txt") 2>&1 &
driver=$!
# On Ctrl-C / TERM the driver kills the case it is running (its own process group) and stops.
trap 'kill -TERM "$driver" 2>/dev/null || true; wait "$driver" || true; exit 130' INT TERM
set +e
wait "$driver"
rc=$?
set -e
sleep 0.2  # let tee flush
echo "run_audit.sh: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s; log in $AUDIT/summary.txt"
exit "$rc"
