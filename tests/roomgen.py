"""Helpers for tests that use generated rooms: the ground truth, and independent meters built on ffmpeg/ffprobe
(never on roomcast's own code, so they can check it)."""

from __future__ import annotations

import json
import re
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE, decode
from samples.generate import SCRIPTS, generate_room

SUMMARY_VALUES = {
    "integrated": re.compile(r"I:\s+(-?[\d.]+|-inf)\s+LUFS"),
    "threshold": re.compile(r"Threshold:\s+(-?[\d.]+|-inf)\s+LUFS"),
    "lra": re.compile(r"LRA:\s+(-?[\d.]+)\s+LU\b"),
    "true_peak": re.compile(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf)\s+dBFS"),
}


def script(name: str) -> Path:
    """The path of a bundled sample script, e.g. ``script("short")``."""
    return SCRIPTS / f"{name}.txt"


def make_room(name: str, out_dir: Path, *, seed: int = 7) -> Path:
    """Generate the bundled script ``name`` into ``out_dir``; return the room folder."""
    return generate_room(script(name), out_dir, seed=seed)


def truth(room_dir: Path) -> dict[str, Any]:
    """The room's ground truth: ``{"duration": s, "turns": [{speaker, name, start, end, text, consent,
    interjection}, ...]}`` with times on the room clock."""
    return json.loads((Path(room_dir) / "truth.json").read_text(encoding="utf-8"))


def manifest(room_dir: Path) -> dict[str, Any]:
    return json.loads((Path(room_dir) / "room.json").read_text(encoding="utf-8"))


def write_manifest(room_dir: Path, data: dict[str, Any] | str) -> None:
    """Replace the room's manifest with ``data`` (a dict, or raw text for malformed JSON)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, indent=2)
    (Path(room_dir) / "room.json").write_text(text, encoding="utf-8")


def ebur128(path: Path) -> dict[str, float]:
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of ``path``, from ffmpeg's
    ``ebur128=peak=true`` summary. ``-inf`` (digital silence) comes back as ``float('-inf')``."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:a:0",
           "-af", "ebur128=peak=true", "-f", "null", "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"ffmpeg could not measure {path}:\n{done.stderr[-2000:]}")
    summary = done.stderr[done.stderr.rfind("Summary:"):]
    values: dict[str, float] = {}
    for key, pattern in SUMMARY_VALUES.items():
        found = pattern.search(summary)
        if found is None:
            raise AssertionError(f"no {key} in ffmpeg's ebur128 summary for {path}:\n{summary}")
        values[key] = float(found.group(1))
    return values


def duration(path: Path) -> float:
    """Duration in seconds of ``path``'s container, from ffprobe."""
    cmd = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ffprobe could not read {path}: {done.stderr.strip()}")
    return float(done.stdout.strip())


def audio_stream(path: Path) -> dict[str, Any]:
    """ffprobe's description of the first audio stream of ``path`` (codec_name, sample_rate, channels, ...)."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_streams", "-of", "json", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ffprobe could not read {path}: {done.stderr.strip()}")
    return json.loads(done.stdout)["streams"][0]


def speak(text: str, path: Path, voice: str = "en") -> np.ndarray:
    """``text`` spoken by espeak-ng into ``path``, returned as 16 kHz mono float32."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text], check=True, capture_output=True)
    return decode(path, what=path.name)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """16 kHz mono 16-bit WAV of ``samples`` (clipped to [-1, 1])."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ANALYSIS_RATE)
        out.writeframes(pcm.tobytes())
    return path
