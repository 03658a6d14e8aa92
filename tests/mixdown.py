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


def diarize_recording(path: Path, *, known: Any = None) -> Any:
    """A mixed recording diarized as a mixed room's run does: the VAD's regions over one decode, voice windows,
    clustering (``known``: library prints, rows of unit vectors). Returns a :class:`pipeline.diarize.Diarization`
    on the recording's clock."""
    import tempfile

    from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
    from pipeline.diarize import DiarizeSettings, diarize
    from pipeline.vad import BLOCK_S, VadSettings, speech_regions_in
    from pipeline.voices import embed_file
    from workers.speakers import MATCH_SIMILARITY

    with tempfile.TemporaryDirectory(prefix="roomcast-test-") as tmp:
        copy = PcmCopy(Path(tmp) / "speech.f32", ANALYSIS_RATE)
        regions = speech_regions_in(decode_blocks(path, what=path.name, block_s=BLOCK_S, copy=copy), VadSettings())
        windows = embed_file(copy.path, regions)
    return diarize(windows, [(r.start, r.end) for r in regions], DiarizeSettings(), known=known,
                   match=MATCH_SIMILARITY)


Turns = list[tuple[float, float, str]]


def label_map(truth: Turns, found: Turns) -> dict[str, str]:
    """Each found speaker's truth speaker: the one-to-one pairing with the most overlapping time (Hungarian)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    refs = sorted({t[2] for t in truth})
    hyps = sorted({t[2] for t in found})
    overlap = np.zeros((len(hyps), len(refs)))
    for a, b, h in found:
        for c, d, r in truth:
            overlap[hyps.index(h), refs.index(r)] += max(0.0, min(b, d) - max(a, c))
    rows, cols = linear_sum_assignment(-overlap)
    return {hyps[i]: refs[j] for i, j in zip(rows, cols, strict=True) if overlap[i, j] > 0}


def error_rate(truth: Turns, found: Turns, *, collar: float = 0.25) -> float:
    """pyannote.metrics' diarization error rate of ``found`` against ``truth`` (``collar`` seconds around every
    reference boundary not scored), speakers paired by the metric itself."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: Turns) -> Annotation:
        out = Annotation()
        for n, (a, b, who) in enumerate(turns):
            if b > a:
                out[Segment(a, b), n] = who
        return out

    scored = Timeline([Segment(min(t[0] for t in truth + found), max(t[1] for t in truth + found))])
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    return float(metric(annotation(truth), annotation(found), uem=scored))


def words_right(truth: Turns, words: list[tuple[float, float, str]], names: dict[str, str] | None = None) -> float:
    """The share of ``words`` (start, end, speaker) said by their speaker in ``truth``: each word belongs to the
    truth turn holding its middle (else the nearest). ``names`` maps a word's speaker to a truth speaker (by
    default, :func:`label_map` of the words' own turns)."""
    if not words:
        return 0.0
    if names is None:
        names = label_map(truth, [(a, b, s) for a, b, s in words])
    right = 0
    for a, b, who in words:
        mid = (a + b) / 2
        turn = min(truth, key=lambda t: 0.0 if t[0] <= mid <= t[1] else min(abs(mid - t[0]), abs(mid - t[1])))
        right += names.get(who, who) == turn[2]
    return right / len(words)
