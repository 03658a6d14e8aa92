"""Recording-platform outputs built by the tests, in each platform's documented shape, from espeak-ng speech: one
room of three speakers, Alice from the start, Bob joining late, Chloé leaving and rejoining (two segments), with
the true speech onsets on the room clock to check a replay against."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

RATE = 48_000
ROOM_EPOCH = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
NAMES = {"alice": "Alice Martin", "bob": "Bob Okafor", "chloe": "Chloé Dubois"}
TURNS = [("alice", "Welcome everyone to the founders hour, we have two guests today."),
         ("bob", "Thanks for having me, I build audio tools for podcasters."),
         ("chloe", "Hello from Paris, my connection is a little shaky tonight."),
         ("chloe", "Sorry, I dropped out for a moment, I am back now."),
         ("alice", "Great, let us start with the first question.")]
GAP_S = 2.0


@dataclass(frozen=True)
class Segment:
    speaker: str
    start: float  # on the room clock
    samples: np.ndarray  # at RATE, from the segment's start


@dataclass(frozen=True)
class Scenario:
    segments: tuple[Segment, ...]
    onsets: tuple[tuple[str, float], ...]  # (speaker, true speech onset on the room clock) per turn
    length: float

    def full_track(self, speaker: str) -> np.ndarray:
        """The speaker's audio over the whole room, silence where they were absent (an aligned export)."""
        out = np.zeros(int(self.length * RATE), dtype=np.float32)
        for seg in self.segments:
            if seg.speaker == speaker:
                at = int(round(seg.start * RATE))
                out[at:at + len(seg.samples)] = seg.samples[:len(out) - at]
        return out


def onset(samples: np.ndarray, rate: int, near: float, before: float = 0.3, after: float = 0.6) -> float:
    """Where the sound nearest ``near`` (seconds) begins: the first sample whose 2 ms envelope passes a fifth of
    the loudest envelope in the window. Applied to a source and to a replay alike."""
    lo = max(0, int((near - before) * rate))
    window = np.abs(samples[lo:int((near + after) * rate)])
    width = max(1, int(0.002 * rate))
    envelope = np.convolve(window, np.ones(width) / width, mode="same")
    return (lo + int(np.argmax(envelope > 0.2 * envelope.max()))) / rate


def _speech(text: str, folder: Path, n: int) -> np.ndarray:
    wav = folder / f"turn{n}.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "165", "-w", str(wav), text], check=True, capture_output=True)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    voice = np.frombuffer(raw, dtype=np.float32)
    return (0.5 * voice / max(1e-6, float(np.abs(voice).max()))).astype(np.float32)


def scenario(folder: Path) -> Scenario:
    folder.mkdir(parents=True, exist_ok=True)
    voices = [_speech(text, folder, n) for n, (_, text) in enumerate(TURNS)]
    at, placed = 0.6, []
    for (speaker, _), voice in zip(TURNS, voices, strict=True):
        placed.append((speaker, at, voice))
        at += len(voice) / RATE + GAP_S
    length = at - GAP_S + 1.0
    (_, a1, _), (_, b1, _), (_, c1, v1), (_, c2, v2), _ = placed
    spans = {"alice": [(0.0, length)], "bob": [(b1 - 0.9, length)],
             "chloe": [(0.4, c1 + len(v1) / RATE + 0.6), (c2 - 0.8, c2 + len(v2) / RATE + 1.2)]}
    segments, onsets = [], []
    for speaker, ranges in spans.items():
        for start, end in ranges:
            samples = np.zeros(int(round((end - start) * RATE)), dtype=np.float32)
            for who, when, voice in placed:
                if who == speaker and start <= when < end:
                    offset = int(round((when - start) * RATE))
                    samples[offset:offset + len(voice)] = voice[:len(samples) - offset]
                    onsets.append((speaker, start + onset(samples, RATE, when - start)))
            segments.append(Segment(speaker, round(start, 3), samples))
    return Scenario(tuple(segments), tuple(sorted(onsets, key=lambda o: o[1])), length)


def encode(samples: np.ndarray, out: Path, *codec: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "-", *codec,
                    str(out)], input=samples.astype(np.float32).tobytes(), check=True, capture_output=True)
    return out


def _ns(seconds: float) -> str:
    return str(int(round((ROOM_EPOCH.timestamp() + seconds) * 1e9)))


def livekit(sc: Scenario, folder: Path) -> Path:
    """Participant egress: one egress (Ogg, WebM or MP4 file) per stay, its EgressInfo as the webhook sends it."""
    formats = [(".ogg", ["-c:a", "libopus"]), (".webm", ["-c:a", "libopus"]), (".mp4", ["-c:a", "aac"])]
    for n, seg in enumerate(sc.segments):
        suffix, codec = formats[n % len(formats)]
        name = f"founders-live-{seg.speaker}-{n}{suffix}"
        encode(seg.samples, folder / "files" / name, *codec)
        end = seg.start + len(seg.samples) / RATE
        info = {"egressId": f"EG_{n:04d}abcd", "roomId": "RM_x1", "roomName": "founders-live",
                "status": "EGRESS_COMPLETE", "startedAt": _ns(seg.start - 0.2), "endedAt": _ns(end + 0.3),
                "participant": {"roomName": "founders-live", "identity": NAMES[seg.speaker], "audioOnly": True},
                "fileResults": [{"filename": f"recordings/{name}", "startedAt": _ns(seg.start),
                                 "endedAt": _ns(end), "duration": str(int((end - seg.start) * 1e9)),
                                 "size": str((folder / "files" / name).stat().st_size),
                                 "location": f"https://bucket.s3.amazonaws.com/recordings/{name}"}]}
        (folder / f"egress-{n}.json").write_text(json.dumps(info))
    return folder


def twilio(sc: Scenario, folder: Path) -> Path:
    """Track recordings: ``RT….mka`` files with a container start time, Recording and Participant resources."""
    folder.mkdir(parents=True, exist_ok=True)
    base_ms, recordings, participants = 73_456_789.0, [], []
    for n, seg in enumerate(sc.segments):
        sid, pa = f"RT{n:032x}", f"PA{n:032x}"
        start_time = 0.1 + 0.05 * n  # where the track starts within its source, in the .mka's own clock
        encode(seg.samples, folder / f"{sid}.mka", "-c:a", "libopus", "-output_ts_offset", f"{start_time}")
        recordings.append({"sid": sid, "account_sid": "AC0", "status": "completed", "type": "audio",
                           "codec": "OPUS", "container_format": "mka", "track_name": f"mic-{seg.speaker}",
                           "source_sid": f"MT{n:032x}", "duration": round(len(seg.samples) / RATE),
                           "offset": round(base_ms + (seg.start - start_time) * 1000, 3),
                           "date_created": (ROOM_EPOCH + timedelta(seconds=seg.start)).isoformat(),
                           "grouping_sids": {"room_sid": "RM" + "a" * 32, "participant_sid": pa}})
        participants.append({"sid": pa, "room_sid": "RM" + "a" * 32, "identity": NAMES[seg.speaker],
                             "status": "disconnected"})
    recordings.append({"sid": "RT" + "f" * 32, "status": "completed", "type": "video", "container_format": "mkv",
                       "track_name": "camera", "offset": base_ms,
                       "grouping_sids": {"room_sid": "RM" + "a" * 32, "participant_sid": f"PA{0:032x}"}})
    (folder / "recordings.json").write_text(json.dumps({"recordings": recordings, "meta": {"page": 0}}))
    (folder / "participants.json").write_text(json.dumps({"participants": participants}))
    (folder / "room-resource.json").write_text(json.dumps({"sid": "RM" + "a" * 32, "unique_name": "founders-call"}))
    return folder


def _stamp(seconds: float) -> str:
    moment = ROOM_EPOCH + timedelta(seconds=seconds)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def agora(sc: Scenario, folder: Path) -> Path:
    """Individual mode: per-UID HLS (AAC in TS slices named with their UTC start), the stop response, a CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    sid, cname, uids = "38f8e3cfdc474cd56fc1ceba380d7e1a", "founders", {"alice": 1001, "bob": 1002, "chloe": 1003}
    playlists: dict[str, list[str]] = {}
    file_list = []
    for n, seg in enumerate(sc.segments):
        prefix = f"{sid}_{cname}__uid_s_{uids[seg.speaker]}__uid_e_audio"
        work = folder / f".hls{n}"
        wav = encode(seg.samples, work / "in.wav", "-c:a", "pcm_s16le")
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "64k", "-f", "hls",
                        "-hls_time", "4", "-hls_list_size", "0", "-hls_segment_filename", str(work / "s%03d.ts"),
                        str(work / "p.m3u8")], check=True, capture_output=True)
        lines, clock = playlists.setdefault(seg.speaker, []), seg.start
        if lines:
            lines.append("#EXT-X-DISCONTINUITY")
        else:
            file_list.append({"fileName": f"{prefix}.m3u8", "trackType": "audio", "uid": str(uids[seg.speaker]),
                              "mixedAllUser": False, "isPlayable": True,
                              "sliceStartTime": int(round((ROOM_EPOCH.timestamp() + seg.start) * 1000))})
        duration = 0.0
        for line in (work / "p.m3u8").read_text().splitlines():
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
                lines.append(line)
            elif line.endswith(".ts"):
                name = f"{prefix}_{_stamp(clock)}.ts"
                shutil.move(str(work / line), folder / name)
                lines.append(name)
                clock += duration
        shutil.rmtree(work)
    for speaker, lines in playlists.items():
        prefix = f"{sid}_{cname}__uid_s_{uids[speaker]}__uid_e_audio"
        head = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-TARGETDURATION:5",
                f"#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=AUDIO,TIME={file_list[0]['sliceStartTime']}"]
        (folder / f"{prefix}.m3u8").write_text("\n".join(head + lines + ["#EXT-X-ENDLIST", ""]))
    file_list.append({"fileName": f"{sid}_{cname}__uid_s_1001__uid_e_video.m3u8", "trackType": "video",
                      "uid": "1001", "mixedAllUser": False, "isPlayable": True, "sliceStartTime": 0})
    stop = {"resourceId": "JyvK8nXHuV1BE64GDkAaBGEscvtHW7v8BrQoRPCHxmeVxwY22", "sid": sid, "cname": cname,
            "serverResponse": {"fileListMode": "json", "fileList": file_list, "uploadingStatus": "uploaded"}}
    (folder / "stop.json").write_text(json.dumps(stop))
    with open(folder / "names.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uid", "name"])
        writer.writerows([[uid, NAMES[speaker]] for speaker, uid in uids.items()])
    return folder


def craig_zip(sc: Scenario, folder: Path) -> Path:
    """Craig's multitrack download: ``N-user.flac`` for the whole room each, and ``info.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "craig-founders.zip"
    info = ["Guild:\t\tFounders", "Channel:\tstage", "Requester:\talice#0", "Start time:\t2026-11-23T18:00:00.000Z",
            "", "Tracks:"]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for n, speaker in enumerate(NAMES, start=1):
            flac = encode(sc.full_track(speaker), folder / f"{n}-{speaker}.flac", "-c:a", "flac")
            archive.write(flac, flac.name)
            info.append(f"\t{NAMES[speaker]}#0 ({100 + n})")
        archive.writestr("info.txt", "\n".join(info) + "\n")
    return out
