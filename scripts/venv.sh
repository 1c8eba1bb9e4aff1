# Sourced by ./up and ./run-tests: make sure .venv exists and holds this checkout.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
venv="$root/.venv"
made="$venv/.corral-venv-made"
# A .venv that an interrupted first run left half-made (no pip in it) is made again, not used.
if [ -d "$venv" ] && [ ! -f "$made" ]; then
  if "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then touch "$made"; else rm -rf "$venv"; fi
fi
if [ ! -x "$venv/bin/python" ]; then
  # One sentence, at once, for an interpreter corral cannot use (3.11 is the oldest it runs on).
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    if command -v "$py" >/dev/null 2>&1; then found="$py is $("$py" -V 2>&1 | head -1)"; else found="there is no $py on PATH"; fi
    echo "corral needs Python 3.11 or newer, and $found: point PYTHON= at another, e.g. PYTHON=python3.12 $0" >&2
    exit 2
  fi
  if ! err="$("$py" -m venv "$venv" 2>&1)"; then
    rm -rf "$venv"
    echo "$py could not make a virtualenv (on Debian and Ubuntu: apt install python3-venv): ${err##*$'\n'}" >&2
    exit 2
  fi
  touch "$made"
fi
stamp="$venv/.corral-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # (pip repeats a warning per package for index folders the operator's config
  # names but this machine lacks; they say nothing about the install)
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  echo "$want" > "$stamp"
fi
