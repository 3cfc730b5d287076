#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is
# missing, then runs `cargo test` (every unit, integration and doc test).
#
#   tools/test.sh                 # everything
#   tools/test.sh -- --test tests ingest   # arguments after -- go to cargo test
#
# What the tests need besides Rust, and why:
#   mosquitto        every integration test starts its own broker on a free port
#   chromium         the dashboard and certificate tests run the pages headless
#   poppler-utils    pdftoppm renders the certificate's PDF to check its pages
#   prometheus       promtool checks tools/ops/gapless.rules.yml
#   systemd          systemd-analyze verifies tools/ops/gapless.service
#   strace           traces serve against the unit's system call filter
#   a Python venv    pyarrow, duckdb and cryptography: the files open in an
#                    auditor's tools, and tools/verify_audit.py verifies them
#
# Debian packages are installed with apt-get when this runs as root (or with
# sudo, if it works without a password); otherwise the script stops and says
# exactly what to install. The venv lives in ~/.cache/gapless/venv. Nothing
# is skipped: a test whose tool is missing fails and names the package.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_args=()
if [ "${1:-}" = "--" ]; then
  shift
  cargo_args=("$@")
fi

# Debian package -> a file it installs.
declare -A wanted=(
  [mosquitto]=/usr/sbin/mosquitto
  [chromium]=/usr/bin/chromium
  [poppler-utils]=/usr/bin/pdftoppm
  [prometheus]=/usr/bin/promtool
  [systemd]=/usr/bin/systemd-analyze
  [strace]=/usr/bin/strace
)
missing=()
for pkg in "${!wanted[@]}"; do
  [ -x "${wanted[$pkg]}" ] || missing+=("$pkg")
done
# A browser of one's own may stand in for Debian's.
if [ -n "${GAPLESS_CHROMIUM:-}" ] && [ -x "$GAPLESS_CHROMIUM" ]; then
  missing=("${missing[@]/chromium/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d' | sort))

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "test.sh: missing Debian packages: ${missing[*]}" >&2
      echo "test.sh: install them as root, then run this again:" >&2
      echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 2
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: missing ${missing[*]}, and this system has no apt-get: install their equivalents" >&2
    exit 2
  fi
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # The prometheus package would start a server on install where it can;
  # only promtool is wanted.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$HOME/.cache/gapless/venv"
modules="pyarrow, duckdb, cryptography"
if ! "$venv/bin/python" -c "import $modules" >/dev/null 2>&1; then
  echo "test.sh: installing pyarrow, duckdb and cryptography into $venv"
  if ! python3 -m venv "$venv"; then
    echo "test.sh: python3 -m venv failed: install python3-venv (Debian) and run this again" >&2
    exit 2
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow duckdb cryptography
fi
export GAPLESS_PYTHON="$venv/bin/python"

exec cargo test "${cargo_args[@]}"
