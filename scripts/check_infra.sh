#!/usr/bin/env bash
# Static security checks of the Bicep templates under infra/ with checkov.
#
# checkov pins dependencies that conflict with the app's, so it lives in its own virtualenv, .venv-infra, built
# from requirements-infra.txt. The virtualenv is (re)installed only when that file changes (a stamp named after
# its hash), so a second run goes straight to the scan.
#
# Exits non-zero when any check fails or a template cannot be parsed (checkov would otherwise skip it quietly).
# A check is skipped only by an inline `// checkov:skip=CKV_...:reason` comment in the resource it concerns.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${INFERQ_INFRA_VENV:-$ROOT/.venv-infra}"
REQUIREMENTS="$ROOT/requirements-infra.txt"
PY="${PY:-python3.11}"
STAMP="$VENV/.stamp-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"

mkdir -p "$VENV"
# Two runs at once (say, parallel test workers) take turns at installing instead of racing.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV/.lock"
  flock 9
fi

if [[ ! -f "$STAMP" ]]; then
  command -v "$PY" >/dev/null 2>&1 || { echo "check_infra: $PY not found (set PY=...)" >&2; exit 2; }
  echo "check_infra: installing checkov into $VENV" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  rm -f "$VENV"/.stamp-*
  touch "$STAMP"
fi

cd "$ROOT"
# --skip-download: no calls to the Prisma Cloud API; checkov's bundled checks are the whole policy set.
set +e
output="$("$VENV/bin/checkov" --framework bicep --directory infra --compact --quiet --skip-download 2>&1)"
status=$?
set -e
printf '%s\n' "$output"

if [[ $status -ne 0 ]]; then
  echo "check_infra: checkov reported failed checks (exit $status)" >&2
  exit "$status"
fi
if grep -qiE 'parsing errors?: *[1-9]|failed to parse' <<<"$output"; then
  echo "check_infra: checkov could not parse every template" >&2
  exit 1
fi
if ! grep -qE 'Failed checks: 0\b' <<<"$output"; then
  echo "check_infra: no checkov summary found: did it scan anything?" >&2
  exit 1
fi
