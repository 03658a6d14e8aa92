"""Long generated rooms for the benchmarks: espeak-ng speech in turns, one track per speaker, levels far apart,
a noise floor, mixed codecs. Each distinct line is synthesised once and reused, so a 30-minute room builds fast."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 22_050
LINES = [
    "Welcome back to the room. Today we talk about shipping audio products that people actually use.",
    "Thanks for having me. I think the hardest part is making every voice sound right in the replay.",
    "Our listeners keep asking how long it takes before the recording shows up in their podcast app.",
    "We measured it last week and the replay was ready a few minutes after the room ended.",
    "That is fast. How do you handle a guest who joins late or drops off in the middle?",
    "Every speaker has a separate track with its own start time, so we simply place it where it belongs.",
    "And the transcript knows who said each word because every track is transcribed on its own.",
    "That sounds much better than guessing speakers from a single mixed recording.",
    "Let us take a question from the audience before we move on to pricing.",
    "My question is about noise. What happens when four people leave their microphones open?",
    "Each track is quiet between phrases, so the noise of four microphones never adds up.",
    "Great answer. Thank you all for joining, and see you in the next room.",
]
INTERJECTIONS = ["Right.", "Exactly.", "Yes, sure.", "Mm-hmm.", "Good point.", "Okay."]
VOICES = ["en-us+f3", "en-gb+m3", "en-us+m1", "en+f4", "en-us+m3", "en-gb+f2", "en+m2", "en-us+f4"]
# espeak-ng voices (voice, pitch 0-99) as far apart as a speaker encoder hears them, the most distinct first: its
# variants of one language are close (en-us+f3 and en+f4 score 0.89 cosine similarity in Resemblyzer, where
# two people score 0.5-0.75); the first 4 of these score at most 0.72, all 8 at most 0.87.
DISTINCT_VOICES = [("en-us+f2", 65), ("en-029+m7", 35), ("en-us+klatt", 65), ("en-029+f4", 35), ("en-us+m1", 35),
                   ("en-029+klatt4", 35), ("en-gb+m1", 65), ("en-029+f2", 35)]
FORMATS = [("opus", ["-c:a", "libopus", "-b:a", "48k"], 48_000), ("wav", ["-c:a", "pcm_s16le"], 44_100),
           ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], 22_050), ("flac", ["-c:a", "flac"], 16_000)]


@dataclass(frozen=True)
class BenchRoom:
    folder: Path
    duration: float
    turns: list[dict[str, object]]


def _speech(line: str, voice: str, cache: Path, pitch: int = 50) -> np.ndarray:
    path = cache / f"{hashlib.sha1(repr((line, voice, pitch)).encode()).hexdigest()[:16]}.raw"
    if not path.exists():
        wav = cache / "tmp.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "165", "-w", str(wav), line], check=True)
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE),
                              "-f", "f32le", "-"], capture_output=True, check=True).stdout
        path.write_bytes(raw)
    audio = np.frombuffer(path.read_bytes(), dtype=np.float32)
    voiced = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[voiced[0]:voiced[-1] + 1] if voiced.size else audio


def build_room(folder: Path, *, minutes: float, speakers: int = 4, spread_db: float = 20.0, seed: int = 11,
               turn_order: list[int] | None = None, loudest_db: float = -6.0,
               voices: list[tuple[str, int]] | None = None, interjections: float = 0.0) -> BenchRoom:
    """A room of ``minutes`` where ``speakers`` take turns; speech levels (RMS, dBFS) spread over ``spread_db``
    below ``loudest_db``. ``voices``: (espeak-ng voice, pitch) per speaker (default: :data:`VOICES`).
    ``interjections``: the chance that, after a turn, someone else says a word or two ("Right.") before the next
    one begins."""
    cast = voices or [(v, 50) for v in VOICES]
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder.parent / "speech-cache"
    cache.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * RATE)
    tracks = [np.zeros(total, dtype=np.float32) for _ in range(speakers)]
    levels = [loudest_db - spread_db * n / max(1, speakers - 1) for n in range(speakers)]
    turns: list[dict[str, object]] = []
    at, n = int(1.0 * RATE), 0
    while True:
        who = turn_order[n % len(turn_order)] if turn_order else n % speakers
        line = LINES[n % len(LINES)]
        voice, pitch = cast[who % len(cast)]
        speech = _speech(line, voice, cache, pitch)
        if at + speech.size >= total - RATE:
            break
        rms = float(np.sqrt(np.mean(speech[np.abs(speech) > 0.01] ** 2)))
        tracks[who][at:at + speech.size] += speech / rms * 10 ** (levels[who] / 20)
        turns.append({"speaker": f"s{who}", "start": at / RATE, "end": (at + speech.size) / RATE, "text": line})
        at += speech.size + int(rng.uniform(0.3, 1.0) * RATE)
        if speakers > 1 and rng.uniform() < interjections:
            other = (who + 1 + int(rng.integers(speakers - 1))) % speakers
            word = INTERJECTIONS[n % len(INTERJECTIONS)]
            voice, pitch = cast[other % len(cast)]
            short = _speech(word, voice, cache, pitch)
            if at + short.size < total - RATE:
                rms = float(np.sqrt(np.mean(short[np.abs(short) > 0.01] ** 2)))
                tracks[other][at:at + short.size] += short / rms * 10 ** (levels[other] / 20)
                turns.append({"speaker": f"s{other}", "start": at / RATE, "end": (at + short.size) / RATE,
                              "text": word})
                at += short.size + int(rng.uniform(0.3, 0.8) * RATE)
        n += 1
    manifest_tracks = []
    for who, audio in enumerate(tracks):
        audio = audio + rng.normal(0, 10 ** (-60 / 20), audio.size).astype(np.float32)
        ext, codec, rate = FORMATS[who % len(FORMATS)]
        name = f"s{who}.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "-",
                        "-ar", str(rate), *codec, str(folder / name)], input=audio.tobytes(), check=True)
        manifest_tracks.append({"speaker": f"s{who}", "file": name, "start": 0.0})
    manifest = {"id": folder.name, "show": "bench", "title": f"Bench room {folder.name}", "language": "en",
                "speakers": [{"id": f"s{w}", "name": f"Speaker {w}"} for w in range(speakers)],
                "tracks": manifest_tracks}
    (folder / "room.json").write_text(json.dumps(manifest))
    (folder / "truth.json").write_text(json.dumps({"turns": turns, "duration": total / RATE}))
    return BenchRoom(folder, total / RATE, turns)
