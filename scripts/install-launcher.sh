#!/usr/bin/env bash
# Put `dockyard` on PATH, pipx-style: a symlink in PREFIX/bin to this checkout's venv script.
# PREFIX defaults to /usr/local for root and ~/.local otherwise. A file there that is not such
# a link is left alone, with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(pwd)/.venv/bin/dockyard
prefix=${PREFIX:-$([ "$(id -u)" -eq 0 ] && echo /usr/local || echo "$HOME/.local")}
link=$prefix/bin/dockyard

if [ -e "$link" ] || [ -L "$link" ]; then
  current=$(readlink "$link" || true)
  if [ "$current" = "$target" ]; then
    exit 0
  fi
  case "$current" in
    */.venv/bin/dockyard) ;;  # another checkout's launcher: this one replaces it
    *) echo "$link exists and is not dockyard's launcher: left alone; use $target" >&2; exit 0 ;;
  esac
fi
mkdir -p "$prefix/bin"
ln -sfn "$target" "$link"
echo "dockyard is on PATH: $link -> $target"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "add $prefix/bin to PATH to run it as plain 'dockyard'" ;;
esac
