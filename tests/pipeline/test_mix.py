"""Mixing and mastering against independent measurements: alignment, levelling, gating, loudness, true peak and
embedded chapters, on rooms built here from espeak-ng speech and generated clicks."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

import pipeline.loudness
from pipeline.analysis import TrackAnalysis, analyse_track
from pipeline.audio import PcmCopy
from pipeline.chapters import Chapter
from pipeline.ffmpeg import pipe_to_ffmpeg
from pipeline.loudness import MEASURE_BLOCK_S, measure_file
from pipeline.manifest import load_room
from pipeline.master import MasterSettings, Tags
from pipeline.mix import (
    ENVELOPE_RATE,
    GainCurve,
    MixPlan,
    MixSettings,
    envelope,
    leveller,
    mixed_blocks,
    plan_mix,
)
from pipeline.replay import render_replay
from pipeline.room import Room

RATE = 44_100
LINES = [
    "Welcome to the room. Today we are talking about how to ship audio products that people love.",
    "Thanks for having me. The hardest part is getting every voice to sound the same in the replay.",
    "I agree with that. Quiet guests are always a problem when the host has a much better microphone.",
    "And the noise floor adds up when you sum many tracks, so you have to gate the silence between phrases.",
]
# (file, codec args, sample rate, speech level in dBFS, start offset on the room clock)
LAYOUT = [
    ("a.opus", ["-c:a", "libopus", "-b:a", "64k"], 48_000, -8.0, 0.0),
    ("b.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], 22_050, -28.0, 7.25),
    ("c.wav", ["-c:a", "pcm_s16le"], 44_100, -18.0, 13.6),
    ("d.flac", ["-c:a", "flac"], 16_000, -24.0, 20.3),
]
SPEECH_AT = 1.5  # seconds into each track where its speech starts


def _espeak(text: str, voice: str, out: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


def _write(samples: np.ndarray, rate_in: int, path: Path, codec: list[str], rate: int, channels: int = 1) -> None:
    raw = samples.astype(np.float32).tobytes()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate_in), "-ac", "1", "-i", "-",
                    "-ar", str(rate), "-ac", str(channels), *codec, str(path)], input=raw, check=True)


@pytest.fixture(scope="module")
def room_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four speakers, 20 dB apart, four codecs and rates, a noise floor; truth.json says where speech is."""
    folder = tmp_path_factory.mktemp("mixroom")
    (folder / "tracks").mkdir()
    rng = np.random.default_rng(3)
    voices = ["en-us+f3", "en-gb+m3", "en-us+m1", "en+f4"]
    speakers, tracks, truth = [], [], []
    for n, ((name, codec, rate, level, start), line, voice) in enumerate(zip(LAYOUT, LINES, voices, strict=True)):
        speech = _espeak(line, voice, folder / f"raw{n}.wav")
        speech = speech / np.sqrt(np.mean(speech[np.abs(speech) > 0.01] ** 2)) * 10 ** (level / 20)
        body = np.zeros(int((SPEECH_AT + speech.size / RATE + 2.0) * RATE))
        at = int(SPEECH_AT * RATE)
        body[at:at + speech.size] += speech
        body += rng.normal(0, 10 ** (-62 / 20), body.size)
        _write(body, RATE, folder / "tracks" / name, codec, rate, channels=2 if name == "c.wav" else 1)
        (folder / f"raw{n}.wav").unlink()
        speakers.append({"id": f"s{n}", "name": f"Speaker {n}", "role": "host" if n == 0 else "speaker"})
        tracks.append({"speaker": f"s{n}", "file": f"tracks/{name}", "start": start})
        truth.append({"speaker": f"s{n}", "start": start + SPEECH_AT, "end": start + SPEECH_AT + speech.size / RATE})
    manifest = {"id": "mix-test", "show": "tests", "title": "Mix test", "speakers": speakers, "tracks": tracks}
    (folder / "room.json").write_text(json.dumps(manifest))
    (folder / "truth.json").write_text(json.dumps(truth))
    return folder


@pytest.fixture(scope="module")
def mastered(room_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one-pass render that publishing uses: mix, master and encode together."""
    out = tmp_path_factory.mktemp("mastered")
    room = load_room(room_dir)
    analyses = [analyse_track(t, what=t.file) for t in room.tracks]
    plan = plan_mix(room, analyses)
    duration = plan.duration
    chapters = [Chapter(0.0, duration / 2, "Intro & <welcome>", "s0"),
                Chapter(duration / 2, duration, "Zoë's turn", "s1")]
    plan, result = render_replay(room, analyses, out, tags=Tags("Mix & <test>", "Speaker 0", "tests"),
                                 chapters=chapters, plan=plan)
    return {"room": room, "analyses": analyses, "plan": plan, "master": result, "out": out, "chapters": chapters,
            "truth": json.loads((room_dir / "truth.json").read_text())}


def mix(room: Room, analyses: list[TrackAnalysis], out: Path, *,
        settings: MixSettings = MixSettings()) -> tuple[MixPlan, float]:
    """The mix that publishing streams into its encoders, written to a float WAV instead: (its plan, its loudness
    by ffmpeg's ebur128)."""
    plan = plan_mix(room, analyses, settings)
    rate = str(settings.sample_rate)
    sink = ["-v", "error", "-f", "f32le", "-ar", rate, "-ac", "1", "-i", "pipe:0", "-c:a", "pcm_f32le", str(out)]
    pipe_to_ffmpeg(mixed_blocks(room, plan, analyses, settings, what=room.id), [sink], sink_whats=["the mix"],
                   bytes_per_second=4.0 * settings.sample_rate)
    return plan, _ebur128(out)[0]


def _decode(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


def _ebur128(path: Path) -> tuple[float, float]:
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    summary = err[err.rfind("Summary:"):]
    integrated = float(summary.split("I:")[1].split("LUFS")[0])
    peak = float(summary.split("Peak:")[1].split("dBFS")[0])
    return integrated, peak


@pytest.mark.parametrize("name", ["replay.mp3", "replay.m4a"])
def test_master_hits_target_on_the_encoded_file(mastered: dict[str, Any], name: str) -> None:
    path = mastered["out"] / name
    integrated, peak = _ebur128(path)
    assert abs(integrated - (-19.0)) <= 0.5, integrated
    assert peak <= -1.0, peak
    independent = pyloudnorm.Meter(RATE).integrated_loudness(_decode(path))
    assert abs(independent - (-19.0)) <= 0.5, independent


def test_mix_loudness_is_predicted_so_one_pass_is_enough(mastered: dict[str, Any], tmp_path: Path) -> None:
    """The mastering gain comes from the plan's prediction: ffmpeg's ebur128 on the mix agrees within 0.3 LU, and
    neither format needed a second pass."""
    _plan, loudness = mix(mastered["room"], mastered["analyses"], tmp_path / "mix.wav")
    predicted = mastered["plan"].predicted_lufs
    assert abs(predicted - loudness) <= 0.3, (predicted, loudness)
    assert mastered["master"].passes == 1, mastered["master"].notes


def test_the_opus_replay_lands_on_target_too(mastered: dict[str, Any], tmp_path: Path) -> None:
    """With Opus on, the same one-pass render writes three files, each on target."""
    _plan, result = render_replay(mastered["room"], mastered["analyses"], tmp_path,
                                  tags=Tags("t", "a", "b"), chapters=[], settings=MasterSettings(opus=True))
    assert sorted(e.format for e in result.files) == ["m4a", "mp3", "opus"]
    for encoded in result.files:
        integrated, peak = _ebur128(encoded.path)
        assert abs(integrated - (-19.0)) <= 0.5 and peak <= -1.0, (encoded.format, integrated, peak)


def test_our_meter_agrees_with_ffmpeg(mastered: dict[str, Any], tmp_path: Path) -> None:
    """roomcast measures its encoded files itself; ffmpeg's ebur128 (192 kHz true peak) is the reference."""
    stereo = tmp_path / "stereo.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mastered["out"] / "replay.mp3"),
                    "-af", "volume=9dB", "-ac", "2", "-c:a", "libopus", str(stereo)], check=True)
    for path in (mastered["out"] / "replay.mp3", mastered["out"] / "replay.m4a", stereo):
        ours = measure_file(path, what="test")
        integrated, peak = _ebur128(path)
        assert abs(ours.integrated_lufs - integrated) <= 0.15, (path.name, ours, integrated)
        assert abs(ours.true_peak_dbtp - peak) <= 0.2, (path.name, ours, peak)


def test_a_loud_burst_is_turned_down_and_speech_is_left_alone() -> None:
    """The leveller: steps 12 LU over the speech level lose (1 - 1/ratio) of the excess; speech keeps its level."""
    speech_db, burst_db = -23.3, -11.3  # K-weighted mean square: -24 and -12 LUFS
    steps = [speech_db] * 50 + [burst_db] * 10 + [speech_db] * 50
    analysis = TrackAnalysis(0, "s0", 0.0, 11.0, (), -24.0, 11.0, (), tuple(steps))
    settings = MixSettings()
    reduction = leveller(analysis, 0.0, settings)
    over = 12.0 - settings.compressor_threshold_lu
    assert reduction[52:58].min() == pytest.approx(-(1 - 1 / settings.compressor_ratio) * over, abs=0.3)
    assert reduction[:45].max() == 0.0 and reduction[65:].max() == 0.0
    assert reduction[49] < -1.0, "the reduction is in place before the burst starts"


def test_speakers_20_db_apart_end_up_within_2_lu(mastered: dict[str, Any]) -> None:
    audio = _decode(mastered["out"] / "replay.mp3")
    shift = mastered["plan"].trim_start
    meter = pyloudnorm.Meter(RATE)
    levels = []
    for turn in mastered["truth"]:
        a, b = int((turn["start"] - shift) * RATE), int((turn["end"] - shift) * RATE)
        levels.append(meter.integrated_loudness(audio[a:b]))
    assert max(levels) - min(levels) <= 2.0, levels


def test_noise_between_phrases_does_not_add_up(mastered: dict[str, Any]) -> None:
    """In stretches where nobody speaks, the mix is no noisier than one track's own noise floor (+3 dB)."""
    audio = _decode(mastered["out"] / "replay.mp3")
    shift = mastered["plan"].trim_start
    truth = mastered["truth"]
    busy = np.zeros(audio.size, dtype=bool)
    for turn in truth:
        busy[max(0, int((turn["start"] - shift - 0.6) * RATE)):int((turn["end"] - shift + 0.6) * RATE)] = True
    quiet = audio[~busy]
    assert quiet.size > RATE, "the test room needs silent stretches"
    mix_floor_db = 20 * np.log10(np.sqrt(np.mean(quiet ** 2)) + 1e-12)
    single_floor_db = -62.0  # what every track was generated with
    assert mix_floor_db <= single_floor_db + 3.0, mix_floor_db


def test_chapters_embedded_in_both_files(mastered: dict[str, Any]) -> None:
    out: Path = mastered["out"]
    chapters: list[Chapter] = mastered["chapters"]
    tags = ID3(out / "replay.mp3")
    assert tags.version[:2] == (2, 3)
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chaps] == [c.title for c in chapters]
    assert [c.start_time for c in chaps] == [int(round(c.start * 1000)) for c in chapters]
    assert tags.getall("CTOC")[0].child_element_ids == [c.element_id for c in chaps]
    assert tags["TIT2"].text[0] == "Mix & <test>"
    m4a = MP4(out / "replay.m4a")
    assert [c.title for c in m4a.chapters] == [c.title for c in chapters]
    for name in ("replay.m4a", "replay.mp3"):  # in time order in the file too, for players that ignore CTOC's order
        probed = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json",
                                            str(out / name)], capture_output=True, check=True).stdout)
        assert [float(c["start_time"]) for c in probed["chapters"]] == pytest.approx([c.start for c in chapters],
                                                                                     abs=0.01), name
        assert [c["tags"]["title"] for c in probed["chapters"]] == [c.title for c in chapters], name


def test_dead_air_is_trimmed(mastered: dict[str, Any]) -> None:
    plan = mastered["plan"]
    first_word = min(t["start"] for t in mastered["truth"])
    assert 0 < plan.trim_start <= first_word
    assert first_word - plan.trim_start <= 1.0


@pytest.fixture(scope="module")
def click_room(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """Tracks of noise with one click each, in four formats, one with a container start time of 1.5 s."""
    folder = tmp_path_factory.mktemp("clicks")
    rng = np.random.default_rng(5)
    layout = [("a.opus", ["-c:a", "libopus"], 48_000, 0.0, 2.0), ("b.mp3", ["-c:a", "libmp3lame"], 22_050, 3.37, 1.1),
              ("c.wav", ["-c:a", "pcm_s16le"], 44_100, 5.021, 2.5), ("d.mka", ["-c:a", "flac", "-output_ts_offset",
                                                                               "1.5"], 16_000, 8.5, 0.7)]
    tracks, expected = [], []
    for n, (name, codec, rate, start, click_at) in enumerate(layout):
        body = rng.normal(0, 0.001, int(6 * RATE))
        at = int(click_at * RATE)
        body[at:at + 40] = 0.8
        _write(body, RATE, folder / name, codec, rate)
        tracks.append({"speaker": f"s{n}", "file": name, "start": start})
        expected.append(start + click_at)
    speakers = [{"id": f"s{n}", "name": f"S{n}"} for n in range(len(layout))]
    (folder / "room.json").write_text(json.dumps({"id": "clicks", "show": "tests", "title": "Clicks",
                                                  "speakers": speakers, "tracks": tracks}))
    return folder, expected


def test_tracks_land_on_their_offsets_within_20_ms(click_room: tuple[Path, list[float]], tmp_path: Path) -> None:
    folder, expected = click_room
    room = load_room(folder)
    analyses = [analyse_track(t, what=t.file) for t in room.tracks]
    no_gate = MixSettings(gate_floor_db=0.0, compressor_ratio=1.0)
    plan, _loudness = mix(room, analyses, tmp_path / "mix.wav", settings=no_gate)
    audio = _decode(tmp_path / "mix.wav")
    for when in expected:
        expected_at = when - plan.trim_start
        lo = int((expected_at - 0.5) * RATE)
        window = np.abs(audio[lo:lo + RATE])
        onset = lo + int(np.argmax(window > 0.5 * window.max()))
        assert abs(onset / RATE - expected_at) <= 0.020, (when, onset / RATE - expected_at)


def test_tracks_land_on_their_offsets_in_the_published_files(click_room: tuple[Path, list[float]],
                                                             tmp_path: Path) -> None:
    """The encoders' delay and the stream copy that tags the files move nothing: each click is where the manifest
    puts it in the MP3 and the M4A as decoded by ffmpeg. (Mastering raises the noise to the loudness target and
    holds the clicks under the ceiling, so a click is found as the loudest sample near it, not by its onset.)"""
    folder, expected = click_room
    room = load_room(folder)
    analyses = [analyse_track(t, what=t.file) for t in room.tracks]
    plan, result = render_replay(room, analyses, tmp_path, tags=Tags("Clicks", "tests", "tests"),
                                 chapters=[Chapter(0.0, 1.0, "All", "s0")],
                                 mix_settings=MixSettings(gate_floor_db=0.0, compressor_ratio=1.0))
    for encoded in result.files:
        audio = _decode(encoded.path)
        for when in expected:
            expected_at = when - plan.trim_start
            lo = int((expected_at - 0.25) * RATE)
            loudest = lo + int(np.argmax(np.abs(audio[lo:lo + RATE // 2])))
            assert abs(loudest / RATE - expected_at) <= 0.020, (encoded.format, when, loudest / RATE - expected_at)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.m4a", "replay.mp3"]  # no untagged file left


def test_a_track_shorter_than_its_declared_span_is_reported(click_room: tuple[Path, list[float]],
                                                             tmp_path: Path) -> None:
    folder, _ = click_room
    copy = tmp_path / "room"
    import shutil

    shutil.copytree(folder, copy)
    data = json.loads((copy / "room.json").read_text())
    data["tracks"][0]["end"] = data["tracks"][0]["start"] + 60.0  # the platform says 60 s; the file holds 6 s
    data["tracks"][1]["end"] = data["tracks"][1]["start"] + 6.0  # consistent: no warning
    (copy / "room.json").write_text(json.dumps(data))
    room = load_room(copy)
    first, second = (analyse_track(t, what=t.file) for t in room.tracks[:2])
    assert len(first.warnings) == 1 and "a.opus" in first.warnings[0] and "60.0 s" in first.warnings[0]
    assert second.warnings == ()


@pytest.mark.parametrize("block_s", [MEASURE_BLOCK_S, 0.37, 10.0])
def test_a_peak_between_samples_is_found_where_the_meter_cuts_its_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_s: float) -> None:
    """A quarter-rate tone at 45 degrees has every sample 3 dB under its peak. One burst of it, centred on one of
    the meter's block boundaries in quiet noise, and a louder-sampled but lower-peaked burst before it: the true
    peak reported is the tone's amplitude, not any sample's; and the report is the same whatever the block size."""
    rate = 44_100
    audio = np.random.default_rng(3).normal(0, 0.01, rate * 25).astype(np.float32)
    n = np.arange(int(0.05 * rate))
    hann = np.sin(np.pi * (n + 0.5) / n.size) ** 2
    audio[2 * rate:2 * rate + n.size] = 0.7 * hann * np.sin(np.pi / 2 * n)  # samples reach 0.7, peak 0.7
    burst = 0.9 * hann * np.sin(np.pi / 2 * n + np.pi / 4)  # samples reach 0.64, peak 0.9
    boundary = int(block_s * rate) * math.ceil(10.0 / block_s)  # the first block boundary from 10 s on
    at = boundary - n.size // 2
    audio[at:at + n.size] = burst
    path = tmp_path / "burst.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "-",
                    "-c:a", "pcm_f32le", str(path)], input=audio.tobytes(), check=True)
    default = measure_file(path, what="test")
    monkeypatch.setattr(pipeline.loudness, "MEASURE_BLOCK_S", block_s)
    report = measure_file(path, what="test")
    assert float(np.max(np.abs(audio))) < 0.75
    assert abs(report.true_peak_dbtp - 20 * np.log10(0.9)) <= 0.1, report
    assert report == default


@pytest.mark.parametrize("rate", [44_100, 48_000, 32_000])
def test_an_envelope_reaches_the_mixing_rate_unchanged(rate: int) -> None:
    """Gate ramps and gain steps at ENVELOPE_RATE, brought to the mixing rate in the uneven stretches a mix asks
    for (a track's offset is rarely a whole number of envelope points): straight lines between the points, the
    same mean gain, and the last value held past the end. 32 kHz is not a multiple of ENVELOPE_RATE."""
    rng = np.random.default_rng(5)
    levels = np.repeat(rng.choice([0.01, 0.3, 0.8], size=120), ENVELOPE_RATE // 2)
    env = np.convolve(levels, np.ones(9) / 9, mode="same").astype(np.float32)  # 30 ms ramps, as the gate makes
    curve = GainCurve(env, rate)
    total = int(env.size * rate / ENVELOPE_RATE) + rate  # a second past the envelope's end
    cuts = np.unique(np.concatenate([[0, total], rng.integers(1, total, size=150)]))
    got = np.concatenate([np.broadcast_to(curve.between(int(lo), int(hi)), (int(hi - lo),))
                          for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)])
    want = np.interp(np.arange(total) / rate, np.arange(env.size) / ENVELOPE_RATE, env)
    assert got.size == total
    assert float(np.max(np.abs(got - want))) <= 1e-5
    assert abs(10 * np.log10(np.mean(got.astype(np.float64) ** 2) / np.mean(want ** 2))) <= 0.001
    assert np.all(got[-rate:] == env[-1])


def test_the_mix_is_each_track_times_its_envelope_at_its_offset(mastered: dict[str, Any]) -> None:
    """The streamed mix against the same sum done at once on the whole tracks: four codecs and sample rates,
    offsets that fall between envelope points, a stereo track, and a trim that starts inside the first track."""
    room, analyses = mastered["room"], mastered["analyses"]
    settings = MixSettings(lead_in_s=0.2)
    plan = plan_mix(room, analyses, settings)
    assert plan.trim_start > 1.0
    got = np.concatenate(list(mixed_blocks(room, plan, analyses, settings, what="test")))
    first, last = round(plan.trim_start * RATE), round(plan.trim_end * RATE)
    want = np.zeros(last, dtype=np.float64)
    by_index = {a.track_index: a for a in analyses}
    for track in room.tracks:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(track.path), "-ac", "1", "-ar", str(RATE),
                              "-f", "f32le", "-"], capture_output=True, check=True).stdout
        audio = np.frombuffer(raw, dtype=np.float32).astype(np.float64)
        env = envelope(by_index[track.index], settings)
        gains = np.interp(np.arange(audio.size) / RATE, np.arange(env.size) / ENVELOPE_RATE, env)
        at = round(track.start * RATE)
        size = min(audio.size, last - at)
        want[at:at + size] += (audio * gains)[:size]
    assert got.size == last - first
    assert float(np.max(np.abs(got - want[first:]))) <= 1e-5
    assert float(np.max(np.abs(got))) > 0.01


def test_a_decoded_copy_mixes_the_same_as_a_fresh_decode(mastered: dict[str, Any], tmp_path: Path) -> None:
    """The copies the analysis keeps (one decode, two rates) hold the very samples a fresh decode gives: the mix
    made from them is the same mix, and the analysis is the same analysis."""
    room, analyses = mastered["room"], mastered["analyses"]
    copies = {t.index: PcmCopy(tmp_path / f"{t.index}.f32", RATE) for t in room.tracks}
    again = [analyse_track(t, what=t.file, copy=copies[t.index]) for t in room.tracks]
    assert again == analyses
    plan = mastered["plan"]
    fresh = np.concatenate(list(mixed_blocks(room, plan, analyses, MixSettings(), what="test")))
    kept = np.concatenate(list(mixed_blocks(room, plan, analyses, MixSettings(), what="test",
                                            copies=copies)))
    assert kept.size == fresh.size and float(np.max(np.abs(kept - fresh))) == 0.0
