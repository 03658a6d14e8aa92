"""Speakers cost nothing by themselves: the same conversation recorded as 2, 4 and 8 tracks (the same lines in
the same order, spread over more speakers, each track silent while the others talk), through the whole
``roomcast process`` with transcription (tiny.en, ``--device auto``).

Prints, for each track count, wall time, CPU time (user + system of ``roomcast`` and every process it started,
steadier than wall time on a shared machine), the turns the room holds, WER, and the 8/2 and 4/2 CPU ratios
(target: 8/2 at most 1.3); then the CPU of the same runs without Whisper (``--no-transcribe``: decoding, VAD,
loudness, mix, master, publish), which shows how much of the growth is not transcription. Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_speakers [--minutes 4] [--rounds 1]   # --minutes 20: the issue's
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
from tests.benchmarks.bench_transcribe import VENV_BIN, run_ours, timed, wer
from tests.benchmarks.benchrooms import build_room

TRACK_COUNTS = (2, 4, 8)


def _without_whisper(room: Path, work: Path) -> float:
    """CPU seconds of ``roomcast process --no-transcribe`` of ``room``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"))
    _wall, cpu, _rss, _out = timed([str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out",
                                    str(work / "store"), "--no-transcribe"], env)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the conversation (20 in the issue)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each room (medians are printed)")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="roomcast -j")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-speakers-"))
    try:
        print(f"{os.cpu_count()} core(s), roomcast -j {args.cores}, Whisper tiny.en on {choose_device('auto').label};"
              f" {args.minutes:g}-minute conversation, {args.rounds} round(s), medians", flush=True)
        print(f"{'tracks':>6} {'turns':>6} {'wall s':>8} {'CPU s':>8} {'CPU s/turn':>10} {'WER':>6}")
        cpu: dict[int, float] = {}
        per_turn: dict[int, float] = {}
        for tracks in TRACK_COUNTS:
            room = build_room(base / f"speakers-{tracks}", minutes=args.minutes, speakers=tracks, spread_db=12.0)
            runs = [run_ours(room.folder, base / "run", args.cores) for _ in range(args.rounds)]
            truth = json.loads((room.folder / "truth.json").read_text())
            cpu[tracks] = statistics.median(r.cpu_s for r in runs)
            per_turn[tracks] = cpu[tracks] / len(room.turns)
            print(f"{tracks:>6} {len(room.turns):>6} {statistics.median(r.wall_s for r in runs):8.1f} "
                  f"{cpu[tracks]:8.1f} {per_turn[tracks]:10.3f} {wer(truth, runs[-1].words):6.3f}", flush=True)
        quiet: dict[int, float] = {}
        for tracks in TRACK_COUNTS:
            quiet[tracks] = statistics.median(_without_whisper(base / f"speakers-{tracks}", base / "run")
                                              for _ in range(args.rounds))
        print("without Whisper: " + ", ".join(f"{t} tracks {quiet[t]:.1f} s CPU" for t in TRACK_COUNTS)
              + f"; 8/2 {quiet[8] / quiet[2]:.2f}; Whisper's share (with - without): "
              + ", ".join(f"{t} tracks {cpu[t] - quiet[t]:.1f} s" for t in TRACK_COUNTS))
        print(f"CPU 8/2 tracks: {cpu[8] / cpu[2]:.2f} (target <= 1.3), per turn {per_turn[8] / per_turn[2]:.2f}; "
              f"4/2 tracks: {cpu[4] / cpu[2]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
