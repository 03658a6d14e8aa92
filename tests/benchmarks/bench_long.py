"""Long rooms: one ``roomcast process`` (with transcription, tiny.en, ``--device auto``) of 6-speaker rooms of 10
and 60 minutes (180 with ``--minutes 10,60,180``), printing wall and CPU seconds per room-minute, their ratio to
the shortest room's, and the peak RSS of the largest single process (target: under 1 GB) and of all of them
together, sampled every 0.25 s. CPU is user + system of roomcast and every process it started, steadier than wall
time on a shared machine. Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_long [--minutes 10,60] [--speakers 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline.devices import choose_device
from tests.benchmarks.bench_transcribe import VENV_BIN, _rss_kb, _tree, wer
from tests.benchmarks.benchrooms import build_room


def run(room: Path, work: Path, cores: int) -> tuple[float, float, float, float, list[dict[str, object]]]:
    """(wall s, CPU s, largest process's peak RSS MB, all processes' peak RSS MB, published words)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), HF_HUB_OFFLINE="1")
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out", str(work / "store"), "-j", str(cores)]
    largest, together = [0], [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def sample() -> None:
        while proc.poll() is None:
            sizes = [_rss_kb(p) for p in _tree(proc.pid)]
            largest[0], together[0] = max(largest[0], max(sizes, default=0)), max(together[0], sum(sizes))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"roomcast failed:\n{err[-3000:]}")
    json.loads(out)
    words = json.loads(next((work / "store").glob("shows/*/episodes/*/words.json")).read_text())["words"]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, largest[0] / 1024, together[0] / 1024, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="10,60", help="room lengths (add 180 for the issue's 3-hour room)")
    parser.add_argument("--speakers", type=int, default=6)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="roomcast -j")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-long-"))
    try:
        print(f"{os.cpu_count()} core(s), roomcast -j {args.cores}, Whisper tiny.en on {choose_device('auto').label};"
              f" {args.speakers} speakers", flush=True)
        print(f"{'minutes':>7} {'wall s':>8} {'CPU s':>8} {'wall s/min':>10} {'CPU s/min':>9} {'x first':>7} "
              f"{'largest MB':>10} {'all MB':>7} {'WER':>6}", flush=True)
        first = None
        for minutes in [float(m) for m in args.minutes.split(",")]:
            room = build_room(base / f"long-{minutes:g}", minutes=minutes, speakers=args.speakers)
            wall, cpu, largest, together, words = run(room.folder, base / "run", args.cores)
            truth = json.loads((room.folder / "truth.json").read_text())
            per_min = cpu / minutes
            first = first or per_min
            print(f"{minutes:7g} {wall:8.1f} {cpu:8.1f} {wall / minutes:10.2f} {per_min:9.2f} {per_min / first:7.2f} "
                  f"{largest:10.0f} {together:7.0f} {wer(truth, words):6.3f}", flush=True)
            shutil.rmtree(room.folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
