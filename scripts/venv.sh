#!/usr/bin/env bash
# A working .venv with dockyard installed in it (editable, with the dev tools). A venv that is
# half made (a failed `python3 -m venv` leaves bin/python without pip) or broken is rebuilt
# from scratch; dockyard is reinstalled when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-python3}
venv=.venv
stamp=$venv/.installed

if ! { [ -x $venv/bin/python ] && $venv/bin/python -m pip --version >/dev/null 2>&1; }; then
  [ -e $venv ] && echo "rebuilding $venv: it has no working pip"
  rm -rf $venv
  log=$(mktemp)
  if ! $py -m venv $venv >"$log" 2>&1; then
    rm -rf $venv
    echo "$py -m venv failed (on Debian: apt-get install python3-venv); it said:" >&2
    tail -n 5 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi
if [ ! -e $stamp ] || [ pyproject.toml -nt $stamp ]; then
  echo "installing dockyard and its dev tools into $venv"
  $venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch $stamp
fi
