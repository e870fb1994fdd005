#!/usr/bin/env bash
# kbaudit's two everyday commands:
#   ./dev.sh run [--port N]   install into .venv, load demo data, print an API key and a curl
#                   line, serve on 127.0.0.1:8000 (or N, or $KBAUDIT_PORT)
#   ./dev.sh test   install with the dev tools, lint, type-check, then run the whole suite twice:
#                   on the embedded default, and on the scale-out mode against a real
#                   PostgreSQL, Redis and SeaweedFS that it starts on 127.0.0.1 and stops after
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv

ensure_venv() {
  if [ -x "$VENV/bin/python" ]; then return; fi
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv as its own package.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      echo "python3 -m venv failed: install Debian's python3-venv (sudo apt-get install python3-venv)" >&2
      exit 1
    fi
    python3 -m venv "$VENV"
  fi
}

install() {
  ensure_venv
  # kbaudit's commands read through the SDK, its own distribution under sdk/: both install
  # from this checkout together, so that pip never looks for kbaudit-sdk anywhere else.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ./sdk -e ".$1" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import kbaudit" # fail here, not later, when the install did not take
}

ensure_chromium() {
  # The console's browser tests drive Debian's chromium; Playwright never downloads one.
  if [ -x /usr/bin/chromium ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "the console's browser tests need Debian's chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
}

case "${1:-}" in
  run)
    shift
    export KBAUDIT_PORT="${KBAUDIT_PORT:-8000}"
    while [ $# -gt 0 ]; do
      case "$1" in
        --port) KBAUDIT_PORT="${2:?--port needs a number}"; shift 2 ;;
        --port=*) KBAUDIT_PORT="${1#--port=}"; shift ;;
        *) echo "usage: ./dev.sh run [--port N]" >&2; exit 2 ;;
      esac
    done
    install ""
    "$VENV/bin/kbaudit" demo
    exec "$VENV/bin/kbaudit" serve --host 127.0.0.1
    ;;
  test)
    shift
    install "[dev]"
    "$VENV/bin/ruff" check src tests bench sdk
    "$VENV/bin/ruff" format --check src tests bench sdk
    "$VENV/bin/mypy"
    ensure_chromium
    services=.services
    scripts/services.sh stop "$services" # a run that was killed may have left them up
    trap 'scripts/services.sh stop "$services"' EXIT
    scripts/services.sh start "$services"
    # shellcheck disable=SC1091
    source "$services/env"
    echo "== the embedded default: SQLite, a local folder, in-process workers"
    "$VENV/bin/pytest" -m "not scaleout" "$@"
    echo "== the scale-out mode: PostgreSQL, SeaweedFS (S3), Redis-dispatched workers"
    KBAUDIT_TEST_MODE=scaleout "$VENV/bin/pytest" "$@"
    ;;
  *)
    echo "usage: ./dev.sh run [--port N] | test [pytest args]" >&2
    exit 2
    ;;
esac
