"""Time to first listen: ``roomcast process --replay-first`` against the same command without it (the peer: the
episode reaches the feed only once transcribed), on generated rooms (tiny.en, ``-j`` = the cores). The first
listen is timed from the command's start (room in) to the moment the show's feed first names the episode (feed
item out), watched every 0.05 s from outside; target: at most 2% of the room's duration. Also printed: each run's
total wall time, and the ratio of the first listen to the peer's publication. Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_first_listen [--minutes 10,60] [--speakers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.benchmarks.bench_transcribe import VENV_BIN
from tests.benchmarks.benchrooms import build_room


def run(room: Path, work: Path, cores: int, *, replay_first: bool) -> tuple[float, float, int]:
    """(seconds until the feed names the episode, seconds until the command ends, words published)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), HF_HUB_OFFLINE="1")
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out", str(work / "store"), "-j", str(cores)]
    if replay_first:
        args.append("--replay-first")
    listed: list[float] = []
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def watch() -> None:
        while proc.poll() is None and not listed:
            for feed in (work / "store").glob("shows/*/feed.xml"):
                if "<item>" in feed.read_text(encoding="utf-8", errors="replace"):
                    listed.append(time.perf_counter() - started)
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    total = time.perf_counter() - started
    watcher.join()
    if proc.returncode != 0:
        sys.exit(f"roomcast failed:\n{err[-3000:]}")
    summary = json.loads(out)
    return (listed[0] if listed else total), total, int(summary.get("words", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="10,60")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="roomcast -j")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-first-listen-"))
    try:
        print(f"{os.cpu_count()} core(s), roomcast -j {args.cores}, Whisper tiny.en; {args.speakers} speakers",
              flush=True)
        print(f"{'minutes':>7} {'first listen s':>14} {'% of room':>9} {'target %':>8} {'replay-first total s':>20} "
              f"{'peer listen s':>13} {'first/peer':>10} {'total/peer':>10} {'words':>11}", flush=True)
        for minutes in [float(m) for m in args.minutes.split(",")]:
            room = build_room(base / f"room-{minutes:g}", minutes=minutes, speakers=args.speakers)
            first, total, words = run(room.folder, base / "first", args.cores, replay_first=True)
            peer, peer_total, peer_words = run(room.folder, base / "peer", args.cores, replay_first=False)
            print(f"{minutes:7g} {first:14.1f} {100 * first / (minutes * 60):9.2f} {2.0:8.1f} {total:20.1f} "
                  f"{peer:13.1f} {first / peer:10.2f} {total / peer_total:10.2f} {words:>5}/{peer_words:<5}",
                  flush=True)
            shutil.rmtree(room.folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
