"""Mixed rooms made from generated multitrack rooms, as a platform's single download would be: every track summed
by ffmpeg at its offset (roomcast's own mixer is not used, so the tests check it independently), the ground truth
carried over."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any


def mix_down(room_dir: Path, out_dir: Path, *, room_id: str | None = None, speakers: list[dict[str, Any]] | None = None,
             parts: int = 1, codec: str = "mp3") -> Path:
    """A mixed room beside ``room_dir``'s multitrack one: its tracks summed into one file (or ``parts``
    consecutive files), ``room.json`` marked ``"recording": "mixed"`` with ``speakers`` (absent when None),
    ``truth.json`` copied. Returns the new room folder."""
    source = json.loads((room_dir / "room.json").read_text(encoding="utf-8"))
    truth = json.loads((room_dir / "truth.json").read_text(encoding="utf-8"))
    room_id = room_id or f"{source['id']}-mixed"
    folder = out_dir / room_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tracks = source["tracks"]
    inputs: list[str] = []
    chains: list[str] = []
    for n, track in enumerate(tracks):
        inputs += ["-i", str(room_dir / track["file"])]
        delay = int(round(float(track["start"]) * 1000))
        chains.append(f"[{n}:a]aresample=44100,aformat=channel_layouts=mono,adelay={delay}:all=1[t{n}]")
    graph = ";".join(chains) + ";" + "".join(f"[t{n}]" for n in range(len(tracks))) + \
        f"amix=inputs={len(tracks)}:normalize=0:duration=longest[mix]"
    whole = folder / "whole.wav"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", graph,
                    "-map", "[mix]", "-c:a", "pcm_s16le", str(whole)], check=True, timeout=900)
    length = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                   "default=nw=1:nk=1", str(whole)], capture_output=True, text=True,
                                  check=True).stdout)
    codec_args = {"mp3": ["-c:a", "libmp3lame", "-b:a", "96k"], "flac": ["-c:a", "flac"],
                  "m4a": ["-c:a", "aac", "-b:a", "96k"]}[codec]
    entries = []
    step = length / parts
    for k in range(parts):
        name = f"recording-{k + 1}.{codec}" if parts > 1 else f"recording.{codec}"
        window = ["-ss", f"{k * step:.3f}", "-t", f"{step:.3f}"] if parts > 1 else []
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(whole), *window,
                        *codec_args, str(folder / name)], check=True, timeout=900)
        entries.append({"file": name, "start": round(k * step, 3)})
    whole.unlink()
    manifest = {k: v for k, v in source.items() if k not in ("speakers", "tracks")}
    manifest.update(id=room_id, recording="mixed", tracks=entries)
    if speakers is not None:
        manifest["speakers"] = speakers
    (folder / "room.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "truth.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
    return folder


def truth_turns(room_dir: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of every turn the ground truth holds, on the room clock."""
    truth = json.loads((room_dir / "truth.json").read_text(encoding="utf-8"))
    return [(float(t["start"]), float(t["end"]), str(t["speaker"])) for t in truth["turns"]]
