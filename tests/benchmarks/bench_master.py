"""Mastering benchmark: roomcast's --no-transcribe path against amix + ffmpeg-normalize and a bare ffmpeg pass.

Run by hand (it is not part of the test suite):

    .venv/bin/python tests/benchmarks/bench_master.py [--minutes 10] [--rounds 3] [--long-minutes 60]

ffmpeg-normalize must be installed (``pip install -e '.[bench]'``). Prints medians, the ratios ours/peer and
ours/floor, the CPU time of each (and the least wall time that CPU time allows on this machine's cores), and for each
output the integrated loudness, true peak and speaker loudness spread measured with
pyloudnorm and ffmpeg's ebur128 (independent of roomcast's own meter), then peak RSS for a long room.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyloudnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.benchrooms import build_room  # noqa: E402

RATE = 44_100
VENV_BIN = Path(sys.executable).parent


def ffmpeg_normalize() -> str:
    peer_venv = Path(__file__).resolve().parents[2] / ".venv-peer" / "bin"
    for candidate in (VENV_BIN / "ffmpeg-normalize", peer_venv / "ffmpeg-normalize"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("ffmpeg-normalize")
    if not found:
        sys.exit("ffmpeg-normalize is not installed: pip install -e '.[bench]'")
    return found


def normalize_args(mix: Path, out: Path) -> list[str]:
    """The peer's mastering: ffmpeg-normalize's two EBU R128 passes over the mix, to -19 LUFS mono as an MP3."""
    return [ffmpeg_normalize(), str(mix), "-o", str(out), "-f", "-q", "-nt", "ebu", "-t", "-19", "-tp", "-1.5",
            "-c:a", "libmp3lame", "-b:a", "96k", "-ar", str(RATE)]


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process of this one, and of theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ours(room: Path, work: Path, *, transcribe: bool = False) -> tuple[float, Path, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), HF_HUB_OFFLINE="1")
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out", str(work / "store")]
    if not transcribe:
        args.append("--no-transcribe")
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"roomcast failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    manifest = json.loads((room / "room.json").read_text())
    replay = work / "store" / "shows" / manifest["show"] / "episodes" / manifest["id"] / "replay.mp3"
    return elapsed, replay, float(summary["trim_start_s"])


def _mix_args(room: Path) -> tuple[list[str], str]:
    manifest = json.loads((room / "room.json").read_text())
    inputs, graph = [], []
    for n, track in enumerate(manifest["tracks"]):
        inputs += ["-i", str(room / track["file"])]
        graph.append(f"[{n}:a]aresample={RATE},adelay=delays={int(track['start'] * 1000)}:all=1[t{n}]")
    count = len(manifest["tracks"])
    graph.append("".join(f"[t{n}]" for n in range(count)) + f"amix=inputs={count}:normalize=0[out]")
    return inputs, ";".join(graph)


def run_peer(room: Path, work: Path) -> tuple[float, Path]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs, graph = _mix_args(room)
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[out]", "-ac", "1",
                    "-c:a", "pcm_s16le", str(work / "mix.wav")], check=True)
    subprocess.run(normalize_args(work / "mix.wav", work / "peer.mp3"), check=True)
    return time.perf_counter() - started, work / "peer.mp3"


def run_floor(room: Path, work: Path) -> tuple[float, Path]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs, graph = _mix_args(room)
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[out]", "-ac", "1",
                    "-c:a", "libmp3lame", "-b:a", "96k", str(work / "floor.mp3")], check=True)
    return time.perf_counter() - started, work / "floor.mp3"


def decode(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


def true_peak(path: Path) -> float:
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    return float(err[err.rfind("Summary:"):].split("Peak:")[1].split("dBFS")[0])


def quality(path: Path, turns: list[dict[str, object]], shift: float) -> dict[str, float]:
    audio = decode(path)
    meter = pyloudnorm.Meter(RATE)
    per_speaker: dict[str, list[np.ndarray]] = {}
    for turn in turns:
        a, b = int((float(turn["start"]) - shift) * RATE), int((float(turn["end"]) - shift) * RATE)  # type: ignore[arg-type]
        per_speaker.setdefault(str(turn["speaker"]), []).append(audio[max(0, a):b])
    levels = [meter.integrated_loudness(np.concatenate(chunks)) for chunks in per_speaker.values()]
    return {"lufs": meter.integrated_loudness(audio), "true_peak": true_peak(path),
            "spread": max(levels) - min(levels)}


def peak_rss_mb(room: Path, work: Path) -> float:
    """Peak RSS of the largest process of one roomcast run, measured in a fresh child."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"))
    done = subprocess.run([sys.executable, "-c", code, str(VENV_BIN / "roomcast"), "-q", "process", str(room),
                           "--out", str(work / "store"), "--no-transcribe"], capture_output=True, text=True, env=env,
                          check=True)
    return int(done.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=60.0, help="room length for the RSS figure (0: skip)")
    parser.add_argument("--long-speakers", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roomcast-bench-") as tmp:
        base = Path(tmp)
        room = build_room(base / "bench-master", minutes=args.minutes, speakers=4, spread_db=20.0)
        print(f"room: {args.minutes:.0f} min, 4 speakers, speech levels 20 dB apart, {len(room.turns)} turns")
        times: dict[str, list[float]] = {"ours": [], "peer": [], "floor": []}
        cpu: dict[str, list[float]] = {"ours": [], "peer": [], "floor": []}
        outputs: dict[str, tuple[Path, float]] = {}
        for n in range(args.rounds):
            before = children_cpu()
            t, path, shift = run_ours(room.folder, base / "ours")
            cpu["ours"].append(children_cpu() - before)
            times["ours"].append(t)
            keep = base / "ours.mp3"
            shutil.copy(path, keep)
            outputs["ours"] = (keep, shift)
            before = children_cpu()
            t, path = run_peer(room.folder, base / "peer")
            cpu["peer"].append(children_cpu() - before)
            times["peer"].append(t)
            outputs["peer"] = (path, 0.0)
            before = children_cpu()
            t, path = run_floor(room.folder, base / "floor")
            cpu["floor"].append(children_cpu() - before)
            times["floor"].append(t)
            outputs["floor"] = (path, 0.0)
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nmedian wall time: ours {med['ours']:.2f} s, peer (amix + ffmpeg-normalize) {med['peer']:.2f} s, "
              f"floor (bare ffmpeg mix+mp3) {med['floor']:.2f} s")
        print(f"ratio ours/peer  = {med['ours'] / med['peer']:.2f}  (target <= 0.5)")
        print(f"ratio ours/floor = {med['ours'] / med['floor']:.2f}  (target <= 1.5)")
        print(f"speed: {room.duration / med['ours']:.0f}x real time (ours), {room.duration / med['peer']:.0f}x (peer)")
        work = {k: statistics.median(v) for k, v in cpu.items()}
        cores = len(os.sched_getaffinity(0))
        print(f"median CPU time (user + system, every process): ours {work['ours']:.1f} s, peer {work['peer']:.1f} s, "
              f"floor {work['floor']:.1f} s; CPU ours/floor = {work['ours'] / work['floor']:.2f}")
        print(f"on {cores} cores ours needs at least {work['ours'] / cores:.1f} s of wall time: ours/floor "
              f">= {work['ours'] / cores / med['floor']:.2f} however well its processes share the cores")
        for name in ("ours", "peer", "floor"):
            path, shift = outputs[name]
            q = quality(path, room.turns, shift)
            print(f"{name:5}: integrated {q['lufs']:6.2f} LUFS, true peak {q['true_peak']:6.2f} dBTP, "
                  f"speaker spread {q['spread']:5.2f} LU")
        if args.long_minutes > 0:
            long_room = build_room(base / "bench-long", minutes=args.long_minutes, speakers=args.long_speakers)
            started = time.perf_counter()
            rss = peak_rss_mb(long_room.folder, base / "long")
            print(f"\nlong room: {args.long_minutes:.0f} min, {args.long_speakers} speakers: peak RSS {rss:.0f} MB "
                  f"(largest single process), {time.perf_counter() - started:.0f} s")
    print(f"(self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
