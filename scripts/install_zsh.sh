#!/usr/bin/env bash
# zsh for tests/test_completion.py (samat completion zsh, tried in an interactive zsh): installed
# with Debian's apt-get when missing and run as root; otherwise says why not, and that test
# skips saying so. Always exits 0: the rest of make test does not depend on it.
set -uo pipefail
command -v zsh >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "make test: no zsh, and no apt-get as root to install it: the zsh completion test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
install() { apt-get install -y -q --no-install-recommends zsh >>"$log" 2>&1; }
if install || { apt-get update -q >>"$log" 2>&1 && install; }; then
  echo "make test: installed zsh with apt-get (for the zsh completion test)"
else
  echo "make test: apt-get install zsh failed ($(grep -E '^E:' "$log" | head -1)): the zsh completion test will skip"
fi
rm -f "$log"
