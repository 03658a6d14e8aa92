"""Mixed recordings against the multitrack path, on the same generated conversations.

For 2, 4 and 8 speakers (espeak-ng voices chosen to be distinct, levels up to 20 dB apart, short interjections
between turns, one speaker who leaves and comes back), a conversation is published twice into one show: as its
multitrack room, and as the one mixed recording a platform would hand out (its tracks summed by ffmpeg). The show's
voice library is first filled from another conversation of the same people. Printed for each path:

- DER: pyannote.metrics' diarization error rate against the ground-truth turns, with the standard 0.25 s collar
  (pyannote's ``collar=0.25``) and without one; for the mixed recording diarized blind (no library), and for both
  paths from the turns of the published words (words of one speaker less than 1 s apart);
- words right: the share of published words on their speaker (each word belongs to the truth turn holding it;
  voices paired with speakers by the most overlap);
- named: the share of the conversation's speakers the mixed path named right from the library;
- time per minute of audio: decode + VAD, voice windows + clustering, and Whisper tiny.en's transcription of the
  same recording.

Targets: DER <= 0.10 and >= 95% of words right for 2-4 voices; >= 90% named right. Then ``--long`` mixed
recordings (default 10 and 60 minutes; add 180 for the 3-hour case) go through ``roomcast process`` without
transcription, printing wall and CPU seconds per minute, their ratio to the shortest, and peak RSS (target: under
1.5 GB). Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_diarize [--speakers 2,4,8] [--minutes 3] [--long 10,60,180]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_transcribe import VENV_BIN, _rss_kb, _tree, wer
from tests.benchmarks.benchrooms import DISTINCT_VOICES, build_room
from tests.mixdown import Turns, diarize_recording, error_rate, label_map, mix_down, truth_turns, words_right

WORD_GAP_S = 1.0


def _order(speakers: int) -> list[int]:
    """Everyone in turn, the last speaker away for the middle third and back at the end."""
    rounds = [list(range(speakers))] * 2 + [list(range(speakers - 1))] * 2 + [list(range(speakers))] * 2
    return [n for r in rounds for n in r]


def _settings(home: Path, **changes: Any) -> Any:
    from workers.config import Settings

    return Settings(store=str(home / "store"), database_url=f"sqlite:///{home / 'catalog.sqlite'}",
                    work_dir=home / "work", cache_dir=home / "cache", **changes)


def _published_words(home: Path, room: Path, room_id: str, trim_start: float) -> tuple[list[tuple[float, float, str]],
                                                                                        dict[str, str], float]:
    """The episode's words (start, end, speaker) on the room clock, its speakers, and its word error rate."""
    data = json.loads(next((home / "store").glob(f"shows/*/episodes/{room_id}/words.json")).read_text())
    words = [(w["start"] + trim_start, w["end"] + trim_start, w["speaker"]) for w in data["words"]]
    truth = json.loads((room / "truth.json").read_text())
    return words, data["speakers"], wer(truth, data["words"])


def _word_turns(words: list[tuple[float, float, str]]) -> Turns:
    turns: Turns = []
    for a, b, who in sorted(words):
        if turns and turns[-1][2] == who and a - turns[-1][1] < WORD_GAP_S:
            turns[-1] = (turns[-1][0], b, who)
        else:
            turns.append((a, b, who))
    return turns


def _transcription_s(path: Path) -> tuple[float, float]:
    """(decode + VAD seconds, Whisper tiny.en seconds) for one recording."""
    from pipeline.models import resolve_model
    from pipeline.transcribe import TranscribeSettings, load_model, transcribe_track
    from pipeline.vad import speech_regions

    model = load_model(resolve_model("tiny.en"), TranscribeSettings())
    started = time.perf_counter()
    regions = speech_regions(path, what=path.name)
    vad_s = time.perf_counter() - started
    started = time.perf_counter()
    transcribe_track(path, regions, track_index=0, speaker="mixed", offset=0.0, model=model, language="en",
                     what=path.name)
    return vad_s, time.perf_counter() - started


def accuracy(base: Path, speakers: int, minutes: float) -> dict[str, float]:
    from workers.runner import process_room

    home = base / f"show-{speakers}"
    rooms = home / "rooms"
    known = build_room(rooms / f"earlier-{speakers}", minutes=1.5, speakers=speakers, spread_db=20.0,
                       loudest_db=-16.0, voices=DISTINCT_VOICES, seed=5,
                       turn_order=[(n + 1) % speakers for n in range(speakers)])
    process_room(_settings(home, transcribe=False), known.folder, processes=2)
    room = build_room(rooms / f"room-{speakers}", minutes=minutes, speakers=speakers, spread_db=20.0,
                      loudest_db=-16.0, voices=DISTINCT_VOICES, turn_order=_order(speakers), interjections=0.3)
    truth = truth_turns(room.folder)
    multi = process_room(_settings(home), room.folder, processes=2)
    multi_words, _, multi_wer = _published_words(home, room.folder, multi["episode"], multi["trim_start_s"])
    mixed_room = mix_down(room.folder, rooms)
    mixed = process_room(_settings(home), mixed_room, processes=2)
    mixed_words, named, mixed_wer = _published_words(home, mixed_room, mixed["episode"], mixed["trim_start_s"])

    recording = mixed_room / "recording.mp3"
    started = time.perf_counter()
    found = diarize_recording(recording)
    diarize_s = time.perf_counter() - started
    vad_s, whisper_s = _transcription_s(recording)
    turns = [(t.start, t.end, f"voice-{t.speaker}") for t in found.turns]
    pairs = label_map(truth, _word_turns(mixed_words))
    library_named = [who for who in named if re.fullmatch(r"s\d+", who)]
    return {
        "speakers": speakers, "found": found.speakers, "minutes": room.duration / 60,
        "der": error_rate(truth, turns), "der_0": error_rate(truth, turns, collar=0.0),
        "der_words_mixed": error_rate(truth, _word_turns(mixed_words)),
        "der_words_multi": error_rate(truth, _word_turns(multi_words)),
        "wer_mixed": mixed_wer, "wer_multi": multi_wer,
        "right_mixed": words_right(truth, mixed_words), "right_multi": words_right(truth, multi_words),
        "named": sum(pairs.get(who) == who for who in library_named) / speakers,
        "vad_per_min": vad_s / (room.duration / 60),
        "voices_per_min": max(0.0, diarize_s - vad_s) / (room.duration / 60),
        "whisper_per_min": whisper_s / (room.duration / 60),
    }


def long_run(base: Path, minutes: float) -> tuple[float, float, float, float, int]:
    """(wall s, CPU s, largest process's peak RSS MB, all processes' peak RSS MB, voices found) of ``roomcast
    process`` on a mixed recording of ``minutes`` (two speakers), without transcription."""
    room = build_room(base / f"long-{minutes:g}", minutes=minutes, speakers=2, spread_db=10.0, loudest_db=-18.0,
                      voices=DISTINCT_VOICES, interjections=0.2)
    mixed = mix_down(room.folder, base)
    shutil.rmtree(room.folder)
    work = base / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{work / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(work / "work"), ROOMCAST_TRANSCRIBE="0", HF_HUB_OFFLINE="1")
    args = [str(VENV_BIN / "roomcast"), "-q", "process", str(mixed), "--out", str(work / "store")]
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
    _out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(mixed, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"roomcast failed on the {minutes:g}-minute mixed recording:\n{err[-3000:]}")
    from storage.catalog import Catalog

    voices = len(Catalog(env["ROOMCAST_DATABASE_URL"]).speakers(mixed.name))
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, largest[0] / 1024, \
        together[0] / 1024, voices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", default="2,4,8")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each conversation")
    parser.add_argument("--long", default="10,60", help="mixed recordings' lengths (add 180 for 3 hours); "
                                                        "empty for none")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-diarize-"))
    try:
        print(f"{os.cpu_count()} core(s); Resemblyzer voice windows, agglomerative clustering; Whisper tiny.en",
              flush=True)
        print(f"{'voices':>6} {'found':>5} {'min':>4} | {'DER':>5} {'DER 0':>5} | {'DER words mixed':>15} "
              f"{'multitrack':>10} | {'WER mixed':>9} {'multitrack':>10} | {'words right mixed':>17} "
              f"{'multitrack':>10} {'ratio':>5} | {'named':>5} | "
              f"{'s/min: VAD':>10} {'voices':>6} {'Whisper':>7} {'voices/Whisper':>14}", flush=True)
        for speakers in [int(n) for n in args.speakers.split(",")]:
            r = accuracy(base, speakers, args.minutes)
            print(f"{speakers:6d} {r['found']:5d} {r['minutes']:4.1f} | {r['der']:5.3f} {r['der_0']:5.3f} | "
                  f"{r['der_words_mixed']:15.3f} {r['der_words_multi']:10.3f} | {r['wer_mixed']:9.3f} "
                  f"{r['wer_multi']:10.3f} | {r['right_mixed']:17.1%} "
                  f"{r['right_multi']:10.1%} {r['right_mixed'] / max(r['right_multi'], 1e-9):5.2f} | "
                  f"{r['named']:5.0%} | {r['vad_per_min']:10.2f} {r['voices_per_min']:6.2f} "
                  f"{r['whisper_per_min']:7.2f} {r['voices_per_min'] / max(r['whisper_per_min'], 1e-9):14.2f}",
                  flush=True)
            shutil.rmtree(base / f"show-{speakers}", ignore_errors=True)
        if args.long:
            print(f"\nmixed recording, no transcription\n{'minutes':>7} {'wall s':>8} {'CPU s':>8} "
                  f"{'wall s/min':>10} {'CPU s/min':>9} {'x first':>7} {'largest MB':>10} {'all MB':>7} {'voices':>6}",
                  flush=True)
            first = None
            for minutes in [float(m) for m in args.long.split(",")]:
                wall, cpu, largest, together, voices = long_run(base, minutes)
                first = first or cpu / minutes
                print(f"{minutes:7g} {wall:8.1f} {cpu:8.1f} {wall / minutes:10.2f} {cpu / minutes:9.2f} "
                      f"{cpu / minutes / first:7.2f} {largest:10.0f} {together:7.0f} {voices:6d}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
