#!/usr/bin/env bash
# Installs roomcast, generates the sample room from samples/scripts/founders-hour.txt with espeak-ng, and
# processes it in-process into ./roomcast-data (local folder store, SQLite catalog, bundled tiny.en model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/python -m samples.generate samples/scripts/founders-hour.txt samples/rooms
.venv/bin/roomcast validate samples/rooms/founders-hour-2026-11-23
.venv/bin/roomcast process samples/rooms/founders-hour-2026-11-23 --out roomcast-data/store --model tiny.en
echo
echo "Published under roomcast-data/store/shows/ ; the feed is roomcast-data/store/shows/*/feed.xml"
