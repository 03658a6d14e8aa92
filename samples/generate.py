"""Synthesise a recorded room (one track per speaker) from a plain-text script with espeak-ng.

Usage: ``python -m samples.generate SCRIPT OUT_DIR [--seed N]``; SCRIPT is a path or the name of a script in
``samples/scripts`` (``founders-hour``, ``short``). The room lands in ``OUT_DIR/<room id>/`` as ``room.json``,
``tracks/*`` and ``truth.json`` (the ground truth: every turn's speaker, text and times on the room clock).

Script format, one item per line::

    # room id=founders-hour-2026-11-23 show=founders-hour title="A & B <live>" language=en visibility=public
    # speaker alice name="Alice Martin" role=host voice=en-us+f3 speed=160 level=-24 codec=opus rate=48000 channels=2
    # speaker dave name="Dave" voice=en-us+m1 level=-26 codec=wav rate=32000 consent=false
    alice: Welcome to the room.          a turn: speaker id, colon, what they say
    ~bob: Right.                         an interjection: starts just before the previous turn ends
    # join zoe                           zoe's first track starts here (before it she is not in the room)
    # leave bob                          bob's current track ends shortly after the last turn
    # rejoin bob codec=aac rate=44100    bob comes back on a new track (codec, rate, channels may change)
    # pause 3.5                          extra silence before the next turn
    ## anything else starting with '#' is a comment

``# room`` keys: ``id``, ``show``, ``title`` (required), ``description``, ``recorded_at``, ``visibility``,
``language``. ``# speaker`` keys: ``name`` (required), ``role`` (speaker), ``voice`` (en), ``speed`` (words per
minute, 165), ``level`` (speech RMS in dBFS, -24), ``noise`` (noise floor RMS in dBFS, -58), ``codec`` (opus, wav,
mp3, flac or aac; wav), ``rate`` (Hz, 44100), ``channels`` (1), ``consent`` (true). Values with spaces are quoted
as in a shell. Speakers without a ``# join`` line are in the room from its start. Gaps between turns are drawn
from 0.3-1.2 s with the seed, so a script and a seed always give the same room.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from pipeline.errors import InvalidRoom, MediaError

log = logging.getLogger(__name__)

RATE = 22_050  # espeak-ng's own rate: tracks are built here and resampled by the encoder
SCRIPTS = Path(__file__).parent / "scripts"
GAP_S = (0.3, 1.2)
OVERLAP_S = (0.25, 0.6)
JOIN_BEFORE_S = (0.6, 1.5)  # people join while someone else is still talking
LEAVE_AFTER_S = (0.2, 0.6)
TAIL_S = 1.5
SILENCE = 0.005  # espeak pads with digital silence; anything above this is speech
KNEE, CEILING = 0.6, 0.8  # peaks above the knee are rounded off to stay under about -2 dBFS
PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)
# Encoder arguments per codec; -bitexact keeps containers free of random serials so a seed gives the same bytes.
CODECS: dict[str, tuple[str, list[str]]] = {
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "64k"]),
    "wav": ("wav", ["-c:a", "pcm_s16le"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "aac": ("m4a", ["-c:a", "aac", "-b:a", "96k"]),
}
ROOM_KEYS = {"id", "show", "title", "description", "recorded_at", "visibility", "language"}
SPEAKER_KEYS = {"name", "role", "voice", "speed", "level", "noise", "codec", "rate", "channels", "consent"}
FORMAT_KEYS = {"codec", "rate", "channels"}


@dataclass(frozen=True)
class Encoding:
    codec: str = "wav"
    rate: int = 44_100
    channels: int = 1


@dataclass(frozen=True)
class CastMember:
    id: str
    name: str
    role: str = "speaker"
    voice: str = "en"
    speed: int = 165
    level_db: float = -24.0
    noise_db: float = -58.0
    encoding: Encoding = Encoding()
    consent: bool = True


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    interjection: bool = False


@dataclass(frozen=True)
class Presence:
    action: str  # join, leave or rejoin
    speaker: str
    encoding: Encoding | None = None


@dataclass(frozen=True)
class Pause:
    seconds: float


Event = Turn | Presence | Pause


@dataclass(frozen=True)
class Script:
    room: dict[str, str]
    cast: tuple[CastMember, ...]
    events: tuple[Event, ...]

    def member(self, speaker_id: str) -> CastMember:
        return next(m for m in self.cast if m.id == speaker_id)


@dataclass(frozen=True)
class TruthTurn:
    """One turn as ``truth.json`` records it: where the speech really is on the room clock."""

    speaker: str
    name: str
    start: float
    end: float
    text: str
    consent: bool
    interjection: bool


@dataclass
class _Segment:
    speaker: str
    start: float
    encoding: Encoding
    end: float | None = None


@dataclass
class _Timeline:
    turns: list[TruthTurn] = field(default_factory=list)
    segments: list[_Segment] = field(default_factory=list)
    placed: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    speech_end: float = 0.0


def parse_script(text: str, *, name: str = "script") -> Script:
    """Parse a room script (format in the module docstring); raise :class:`InvalidRoom` naming each bad line."""
    room: dict[str, str] = {}
    cast: list[CastMember] = []
    events: list[Event] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("##"):
            continue
        try:
            if line.startswith("#"):
                _directive(line[1:].split(None, 1), room, cast, events)
            else:
                events.append(_turn(line))
        except (ValueError, KeyError) as exc:
            problems.append(f"{name}: line {number}: {exc}")
    script = Script(room=room, cast=tuple(cast), events=tuple(events))
    problems += [f"{name}: {p}" for p in _check(script)]
    if problems:
        raise InvalidRoom(name, problems)
    return script


def _directive(words: list[str], room: dict[str, str], cast: list[CastMember], events: list[Event]) -> None:
    keyword, rest = (words + [""])[:2]
    if keyword == "room":
        room.update(_pairs(shlex.split(rest), ROOM_KEYS))
    elif keyword == "speaker":
        speaker_id, *options = shlex.split(rest) or [""]
        cast.append(_member(speaker_id, _pairs(options, SPEAKER_KEYS)))
    elif keyword in ("join", "leave", "rejoin"):
        speaker_id, *options = shlex.split(rest) or [""]
        pairs = _pairs(options, FORMAT_KEYS)
        encoding = Encoding(pairs.get("codec", "wav"), int(pairs.get("rate", 44_100)),
                            int(pairs.get("channels", 1))) if pairs else None
        events.append(Presence(keyword, speaker_id, encoding))
    elif keyword == "pause":
        events.append(Pause(float(rest)))


def _pairs(words: list[str], allowed: set[str]) -> dict[str, str]:
    pairs = dict(word.split("=", 1) for word in words if "=" in word)
    unknown = sorted(set(pairs) - allowed) + [w for w in words if "=" not in w]
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; use key=value with one of {sorted(allowed)}")
    return pairs


def _member(speaker_id: str, pairs: dict[str, str]) -> CastMember:
    if not speaker_id or "name" not in pairs:
        raise ValueError("a speaker needs an id and name=...")
    encoding = Encoding(pairs.get("codec", "wav"), int(pairs.get("rate", 44_100)), int(pairs.get("channels", 1)))
    return CastMember(
        id=speaker_id, name=pairs["name"], role=pairs.get("role", "speaker"), voice=pairs.get("voice", "en"),
        speed=int(pairs.get("speed", 165)), level_db=float(pairs.get("level", -24)),
        noise_db=float(pairs.get("noise", -58)), encoding=encoding,
        consent=pairs.get("consent", "true").lower() not in ("false", "no", "0"),
    )


def _turn(line: str) -> Turn:
    who, sep, text = line.partition(":")
    if not sep or not text.strip():
        raise ValueError(f"expected 'speaker: text', got {line!r}")
    interjection = who.startswith("~")
    return Turn(who.lstrip("~").strip(), " ".join(text.split()), interjection)


def _check(script: Script) -> list[str]:
    problems = [f"# room needs {key}=..." for key in ("id", "show", "title") if key not in script.room]
    ids = [m.id for m in script.cast]
    problems += [f"speaker {i!r} is declared twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for member in script.cast:
        if member.encoding.codec not in CODECS:
            problems.append(f"speaker {member.id!r}: unknown codec {member.encoding.codec!r} (use {sorted(CODECS)})")
    for event in script.events:
        who = event.speaker if isinstance(event, Turn | Presence) else None
        if who is not None and who not in ids:
            problems.append(f"{who!r} is not declared with '# speaker {who} name=...'")
        if isinstance(event, Presence) and event.encoding and event.encoding.codec not in CODECS:
            problems.append(f"{event.action} {who}: unknown codec {event.encoding.codec!r}")
    if not any(isinstance(e, Turn) for e in script.events):
        problems.append("the script has no turns")
    return problems


def generate_room(script: Path, out_dir: Path, *, seed: int = 7) -> Path:
    """Build the room described by ``script`` under ``out_dir`` and return the room folder."""
    parsed = parse_script(script.read_text(encoding="utf-8"), name=script.name)
    speech = _synthesise(parsed)
    rng = np.random.default_rng(seed)
    timeline = _timeline(parsed, speech, rng)
    folder = out_dir / parsed.room["id"]
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{parsed.room['id']}.", dir=out_dir))
    try:
        tracks = _write_tracks(parsed, timeline, work, seed)
        duration = timeline.speech_end + TAIL_S
        _write_json(work / "room.json", _manifest(parsed, tracks))
        _write_json(work / "truth.json", {"room": parsed.room["id"], "seed": seed, "duration": round(duration, 3),
                                          "turns": [asdict(t) for t in timeline.turns]})
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("generated room %s (%.1f s, %d turns)", folder, duration, len(timeline.turns))
    return folder


def _synthesise(script: Script) -> dict[tuple[str, str], np.ndarray]:
    """Every (speaker, line) as trimmed float32 at RATE, levelled to the speaker's speech level."""
    keys = sorted({(e.speaker, e.text) for e in script.events if isinstance(e, Turn)})
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        clips = pool.map(lambda n_key: _espeak(script.member(n_key[1][0]), n_key[1][1], Path(tmp) / f"{n_key[0]}.wav"),
                         enumerate(keys))
        return dict(zip(keys, clips, strict=True))


def _espeak(member: CastMember, text: str, wav: Path) -> np.ndarray:
    cmd = ["espeak-ng", "-v", member.voice, "-s", str(member.speed), "-w", str(wav), text]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MediaError(f"espeak-ng could not speak for {member.id!r} (apt-get install espeak-ng)",
                         shlex.join(cmd), str(getattr(exc, "stderr", "") or "")) from exc
    with wave.open(str(wav)) as reader:
        audio = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    voiced = np.flatnonzero(np.abs(audio) > SILENCE)
    audio = audio[voiced[0]:voiced[-1] + 1]
    return _soft_clip(audio / _speech_rms(audio) * np.float32(10 ** (member.level_db / 20)))


def _speech_rms(audio: np.ndarray) -> float:
    """RMS over 10 ms frames within 40 dB of the loudest: the level of the speech, not of its pauses."""
    frames = audio[: audio.size // 220 * 220].reshape(-1, 220)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    active = frames[rms > rms.max() * 0.01]
    return float(np.sqrt(np.mean(active.astype(np.float64) ** 2)))


def _soft_clip(audio: np.ndarray) -> np.ndarray:
    """Round off the rare peaks of a loud speaker below CEILING so no encoder or resampler clips them."""
    over = np.abs(audio) > KNEE
    audio = audio.copy()
    excess = (np.abs(audio[over]) - KNEE) / (CEILING - KNEE)
    audio[over] = np.sign(audio[over]) * (KNEE + (CEILING - KNEE) * np.tanh(excess))
    return audio.astype(np.float32)


def _timeline(script: Script, speech: dict[tuple[str, str], np.ndarray], rng: np.random.Generator) -> _Timeline:
    """Place turns and track segments on the room clock (seconds), drawing gaps from ``rng``."""
    joiners = {e.speaker for e in script.events if isinstance(e, Presence) and e.action == "join"}
    timeline = _Timeline()
    open_segments = {m.id: _Segment(m.id, 0.0, m.encoding) for m in script.cast if m.id not in joiners}
    timeline.segments += open_segments.values()
    pause: float = 0.0
    previous: TruthTurn | None = None
    for event in script.events:
        if isinstance(event, Pause):
            pause += event.seconds
        elif isinstance(event, Presence):
            _presence(script, event, open_segments, timeline, rng)
        else:
            audio = speech[(event.speaker, event.text)]
            if event.interjection and previous is not None:
                start = max(previous.start + 0.2, previous.end - rng.uniform(*OVERLAP_S))
            else:
                start = timeline.speech_end + rng.uniform(*GAP_S) + pause
            start = round(start * RATE) / RATE
            segment = open_segments.get(event.speaker)
            if segment is None or start < segment.start:
                raise InvalidRoom(script.room["id"], [f"{event.speaker!r} speaks ({event.text[:30]!r}...) "
                                                      "while not in the room: add '# join' or '# rejoin' first"])
            member = script.member(event.speaker)
            previous = TruthTurn(member.id, member.name, round(start, 3), round(start + audio.size / RATE, 3),
                                 event.text, member.consent, event.interjection)
            timeline.turns.append(previous)
            timeline.placed.append((member.id, round(start * RATE), audio))
            timeline.speech_end = max(timeline.speech_end, start + audio.size / RATE)
            pause = 0.0
    for segment in open_segments.values():
        segment.end = timeline.speech_end + TAIL_S
    timeline.turns.sort(key=lambda t: t.start)
    return timeline


def _presence(script: Script, event: Presence, open_segments: dict[str, _Segment], timeline: _Timeline,
              rng: np.random.Generator) -> None:
    who = event.speaker
    if event.action == "leave":
        if who not in open_segments:
            raise InvalidRoom(script.room["id"], [f"'# leave {who}' but {who!r} is not in the room"])
        open_segments.pop(who).end = timeline.speech_end + rng.uniform(*LEAVE_AFTER_S)
        return
    if who in open_segments:
        raise InvalidRoom(script.room["id"], [f"'# {event.action} {who}' but {who!r} is already in the room"])
    earlier = [s.end or 0.0 for s in timeline.segments if s.speaker == who]
    start = max([timeline.speech_end - rng.uniform(*JOIN_BEFORE_S)] + [end + 1.0 for end in earlier])
    encoding = event.encoding or script.member(who).encoding
    open_segments[who] = _Segment(who, round(start, 3), encoding)
    timeline.segments.append(open_segments[who])


def _write_tracks(script: Script, timeline: _Timeline, folder: Path, seed: int) -> list[dict[str, object]]:
    total = round((timeline.speech_end + TAIL_S) * RATE) + 1
    voices = {m.id: np.zeros(total, dtype=np.float32) for m in script.cast}
    for speaker, at, audio in timeline.placed:
        voices[speaker][at:at + audio.size] += audio
    (folder / "tracks").mkdir()
    tracks: list[dict[str, object]] = []
    counts = {m.id: sum(s.speaker == m.id for s in timeline.segments) for m in script.cast}
    seen: dict[str, int] = {}
    for n, segment in enumerate(timeline.segments):
        seen[segment.speaker] = seen.get(segment.speaker, 0) + 1
        suffix = f"-{'abcdefgh'[seen[segment.speaker] - 1]}" if counts[segment.speaker] > 1 else ""
        ext = CODECS[segment.encoding.codec][0]
        name = f"tracks/{segment.speaker}{suffix}.{ext}"
        a, b = round(segment.start * RATE), round((segment.end or 0.0) * RATE)
        member = script.member(segment.speaker)
        audio = voices[segment.speaker][a:b] + _pink_noise(b - a, member.noise_db, seed * 1000 + n)
        _encode(audio, segment.encoding, folder / name)
        tracks.append({"speaker": segment.speaker, "file": name, "start": round(a / RATE, 3)})
    return tracks


def _pink_noise(size: int, level_db: float, seed: int) -> np.ndarray:
    """Seeded 1/f noise at ``level_db`` RMS: a realistic floor for the VAD to ignore."""
    white = np.random.default_rng(seed).standard_normal(size + RATE)
    # A classic 3-pole approximation of a -3 dB/octave slope; the extra second lets the filter settle.
    noise = lfilter(PINK_B, PINK_A, white)[RATE:]
    return (noise / np.sqrt(np.mean(noise**2)) * 10 ** (level_db / 20)).astype(np.float32)


def _encode(audio: np.ndarray, encoding: Encoding, path: Path) -> None:
    codec_args = CODECS[encoding.codec][1]
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(RATE), "-ac", "1",
           "-i", "pipe:0", "-ar", str(encoding.rate), "-ac", str(encoding.channels), *codec_args,
           "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(path)]
    done = subprocess.run(cmd, input=audio.astype("<f4").tobytes(), capture_output=True, timeout=300)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise MediaError(f"encoding sample track {path.name} failed", shlex.join(cmd), tail)


def _manifest(script: Script, tracks: list[dict[str, object]]) -> dict[str, object]:
    manifest: dict[str, object] = dict(script.room)
    speakers = []
    for member in script.cast:
        entry: dict[str, object] = {"id": member.id, "name": member.name, "role": member.role}
        if not member.consent:
            entry["consent"] = False
        speakers.append(entry)
    manifest["speakers"] = speakers
    manifest["tracks"] = tracks
    return manifest


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _resolve_script(value: str) -> Path:
    path = Path(value)
    if path.is_file():
        return path
    named = SCRIPTS / f"{value}.txt"
    if named.is_file():
        return named
    raise SystemExit(f"no script {value!r}: give a path or one of {sorted(p.stem for p in SCRIPTS.glob('*.txt'))}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samples.generate", description=__doc__.splitlines()[0])
    parser.add_argument("script", help="script file, or a name in samples/scripts (founders-hour, short)")
    parser.add_argument("out_dir", type=Path, help="folder that receives the room folder")
    parser.add_argument("--seed", type=int, default=7, help="seed for gaps, overlaps and noise (default 7)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = generate_room(_resolve_script(args.script), args.out_dir, seed=args.seed)
    except (InvalidRoom, MediaError) as exc:
        raise SystemExit(str(exc)) from exc
    print(folder)


if __name__ == "__main__":
    main()
