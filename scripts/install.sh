#!/usr/bin/env bash
# Installs everything roomcast needs on a Debian machine: system packages, then a virtualenv in .venv with
# roomcast and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(ffmpeg espeak-ng sox redis-server postgresql gpodder fonts-dejavu-core python3-venv python3-pip
                 chromium)
# npm for axe-core and podcast-partytime (tests): Debian's nodejs and npm, unless a Node.js with npm is already
# there (NodeSource's nodejs bundles npm and conflicts with Debian's npm package)
command -v npm >/dev/null 2>&1 || SYSTEM_PACKAGES+=(nodejs npm)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77.0.3,<81'
# torch (for the voice encoder) as its CPU build, before anything asks for it: a plain request would bring the
# CUDA build (several GB). TORCH_INDEX_URL may name PyTorch's CPU index on machines that reach it.
.venv/bin/python -c "import torch" 2>/dev/null \
  || .venv/bin/python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/python -m pip install -q -e '.[test]'
# The page tests check accessibility with axe-core and the feed tests read feeds with podcast-partytime (npm,
# with the machine's Node.js), both kept in the ignored .node folder.
[ -f .node/node_modules/axe-core/axe.min.js ] && [ -d .node/node_modules/podcast-partytime ] \
  || npm install --silent --prefix .node axe-core podcast-partytime >/dev/null
echo "roomcast installed in .venv ($(.venv/bin/roomcast --help >/dev/null && echo ok))"
