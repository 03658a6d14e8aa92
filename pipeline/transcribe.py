"""Per-track transcription with faster-whisper: only the speech regions reach the model.

The speech regions of a track (``pipeline.vad``) are cut from one streamed decode of the track and packed, with
short silences between them, into chunks of at most ~30 s of audio: one chunk is one pass of Whisper's encoder,
which always works on 30 s windows. Measured on tiny.en with one thread on 8 espeak-ng sentences spread over a
120 s track, packing with 0.5 s gaps took 5.7-5.9 s at WER 0.05; one call per region took 10.1 s (WER 0.08),
``clip_timestamps`` over the decoded track 9.8 s (WER 0.09); gaps of 0.3 s or 1.0 s gave WER 0.12 and 0.09.
The packed chunks then go through faster-whisper's batched pipeline, 8 at a time (one encoder pass and one beam
search for the batch): on two 10-minute tracks of one speaker in four (121 s and 139 s of speech) that took
8.0 s and 10.2 s against 16.5 s and 19.2 s one chunk at a time with a decode per chunk, at the same WER (0.003,
0.10). Every word time is mapped back through the packing to the room clock.

faster-whisper's own types stay inside this module: callers get :class:`SpeechModel` and our transcript types.
"""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE, decode, decode_blocks
from pipeline.errors import TranscriptionError
from pipeline.models import ModelRef
from pipeline.transcript import Segment, TrackTranscript, Word
from pipeline.vad import SpeechRegion

log = logging.getLogger(__name__)

# faster-whisper's temperature fallbacks end at 1.0; a segment decoded there failed every earlier try.
_LAST_TEMPERATURE = 1.0
SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
# Whisper's captions for sounds it heard instead of words: "[Music]", "(upbeat music)", "♪ ♪", "*coughs*".
_ANNOTATION = re.compile(r"^\W*(\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫#\s-]+)\W*$")


@dataclass(frozen=True)
class TranscribeSettings:
    """How tracks are transcribed. Defaults suit per-speaker tracks on a CPU worker.

    - ``compute_type="int8"``, ``cpu_threads=1``, ``device="cpu"``: one worker process per core.
    - ``beam_size=5``: Whisper's own default; greedy (1) was 15-20% faster on tiny.en, at WER 0.08 against 0.07.
    - ``no_speech_threshold=0.6`` and ``log_prob_threshold=-1.0``: a segment with both a high no-speech
      probability and a low average log-probability is dropped as invented text.
    - ``compression_ratio_threshold=2.4``: text that compresses this well is a repetition loop.
    - ``condition_on_previous_text=False``: the previous text as a prompt makes loops spread.
    - ``chunk_s=29.5``, ``gap_s=0.5``: packed speech per chunk (Whisper's window is 30 s) and silence between
      packed regions.
    - ``batch_size=8``: chunks decoded together by faster-whisper's batched pipeline (one encoder and one beam
      search over the batch). The batched pipeline has no temperature fallback: a chunk that fails the guards
      below is dropped, not retried.
    - ``max_region_s=120.0``: longer regions are cut, to keep the audio in memory bounded.
    - ``pause_s=1.0``: a silence this long between words ends a segment (as does a sentence end).
    - ``min_word_probability=0.3``: a segment whose words average below this is dropped as noise.
    """

    compute_type: str = "int8"
    cpu_threads: int = 1
    device: str = "cpu"
    beam_size: int = 5
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    condition_on_previous_text: bool = False
    chunk_s: float = 29.5
    gap_s: float = 0.5
    batch_size: int = 8
    max_region_s: float = 120.0
    pause_s: float = 1.0
    min_word_probability: float = 0.3


class SpeechModel:
    """A loaded Whisper model. ``calls`` and ``audio_s`` count what was fed to it (for logs and tests)."""

    def __init__(self, ref: ModelRef, whisper: Any) -> None:
        self.ref = ref
        self.english_only = bool(ref.english_only or not whisper.model.is_multilingual)
        self._whisper = whisper
        self.calls = 0
        self.audio_s = 0.0
        self._batched: Any = None

    def _transcribe(self, audio: np.ndarray, language: str, settings: TranscribeSettings) -> list[Any]:
        self.calls += 1
        self.audio_s += audio.size / ANALYSIS_RATE
        segments, _info = self._whisper.transcribe(
            audio, language=language, beam_size=settings.beam_size, word_timestamps=True, vad_filter=False,
            condition_on_previous_text=settings.condition_on_previous_text,
            no_speech_threshold=settings.no_speech_threshold, log_prob_threshold=settings.log_prob_threshold,
            compression_ratio_threshold=settings.compression_ratio_threshold,
        )
        return list(segments)  # the generator does the work: run it here, inside the error translation

    def _transcribe_batch(self, audio: np.ndarray, clips: list[dict[str, float]], language: str,
                          settings: TranscribeSettings) -> list[Any]:
        """Transcribe the ``clips`` (seconds into ``audio``, each at most 30 s) together, ``batch_size`` at once."""
        self.calls += 1
        self.audio_s += audio.size / ANALYSIS_RATE
        if self._batched is None:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(self._whisper)
        segments, _info = self._batched.transcribe(
            audio, language=language, beam_size=settings.beam_size, word_timestamps=True, vad_filter=False,
            clip_timestamps=clips, batch_size=settings.batch_size, without_timestamps=True,
            condition_on_previous_text=False, no_speech_threshold=settings.no_speech_threshold,
            log_prob_threshold=settings.log_prob_threshold,
            compression_ratio_threshold=settings.compression_ratio_threshold,
        )
        return list(segments)

    def _detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        self.calls += 1
        self.audio_s += audio.size / ANALYSIS_RATE
        language, probability, _all = self._whisper.detect_language(audio=audio)
        return str(language), float(probability)


_MODELS: dict[tuple[str, str, str, int], SpeechModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(ref: ModelRef, settings: TranscribeSettings = TranscribeSettings()) -> SpeechModel:
    """The Whisper model of ``ref``, loaded once per process for each device/compute type/thread count."""
    key = (ref.load_target, settings.device, settings.compute_type, settings.cpu_threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = SpeechModel(ref, _load_whisper(ref, settings))
        return _MODELS[key]


def _load_whisper(ref: ModelRef, settings: TranscribeSettings) -> Any:
    try:
        from faster_whisper import WhisperModel

        log.info("loading Whisper model %s (%s) on %s/%s", ref.name, ref.source, settings.device, settings.compute_type)
        return WhisperModel(ref.load_target, device=settings.device, compute_type=settings.compute_type,
                            cpu_threads=settings.cpu_threads)
    except Exception as exc:  # faster-whisper, ctranslate2 and the hub client raise many unrelated types
        hint = "check the folder" if ref.path is not None else "this machine may be offline: give a model folder"
        raise TranscriptionError(f"could not load Whisper model {ref.name!r} from {ref.load_target}: {exc} ({hint})") \
            from exc


def check_language(model: SpeechModel, language: str | None, *, what: str) -> None:
    """Raise when an English-only model is asked to transcribe another language."""
    if language and model.english_only and language.lower().split("-")[0] != "en":
        raise TranscriptionError(
            f"{what}: the room's language is {language!r} but Whisper model {model.ref.name!r} is English-only: "
            "choose a multilingual model (e.g. --model base) or correct the room's language"
        )


def detect_language(path: Path, regions: Sequence[SpeechRegion], model: SpeechModel, *, what: str = "") -> str:
    """The language spoken in the longest speech of the track (up to 30 s of it)."""
    what = what or str(path)
    if model.english_only:
        return "en"
    if not regions:
        raise TranscriptionError(f"{what}: no speech to detect the language from; set 'language' in room.json")
    longest = sorted(_split_long(regions, 30.0), key=lambda r: r.duration, reverse=True)
    chunk = sorted(_pack(longest, TranscribeSettings())[0], key=lambda r: r.start)
    audio, _ = _decode_chunk(path, chunk, 0.5, what=what)
    audio = audio[:30 * ANALYSIS_RATE]
    try:
        language, probability = model._detect_language(audio)
    except Exception as exc:  # translate whatever the model raises, in one place
        raise TranscriptionError(f"{what}: language detection failed: {exc}") from exc
    log.info("%s: detected language %s (p=%.2f)", what, language, probability)
    return language


def transcribe_track(path: Path, regions: Sequence[SpeechRegion], *, track_index: int, speaker: str, offset: float,
                     model: SpeechModel, language: str | None, settings: TranscribeSettings = TranscribeSettings(),
                     what: str = "") -> TrackTranscript:
    """Transcribe the speech regions of one track; every word on the room clock and tagged with ``speaker``."""
    what = what or str(path)
    check_language(model, language, what=what)
    if not regions:
        return TrackTranscript(track_index, speaker, language or "und", ())
    # Whisper knows "en", not "en-GB": a room's regional tag is reduced to its language.
    language = language.split("-")[0].lower() if language else detect_language(path, regions, model, what=what)
    words: list[Word] = []
    batch: list[tuple[np.ndarray, list[_Piece]]] = []
    for audio, pieces in _chunks(path, _pack(_split_long(regions, settings.max_region_s), settings), settings.gap_s,
                                 what=what):
        batch.append((audio, pieces))
        if len(batch) == settings.batch_size:
            words += _transcribe_batch(batch, model, language, settings, offset, speaker, what=what)
            batch = []
    if batch:
        words += _transcribe_batch(batch, model, language, settings, offset, speaker, what=what)
    segments = split_segments(words, pause_s=settings.pause_s)
    log.info("%s: %d words in %d segments from %.1f s of speech", what, len(words), len(segments),
             sum(r.duration for r in regions))
    return TrackTranscript(track_index, speaker, language, segments)


def split_segments(words: Sequence[Word], *, pause_s: float = 1.0) -> tuple[Segment, ...]:
    """Group one speaker's words into segments that end on a sentence end or a pause longer than ``pause_s``."""
    segments: list[Segment] = []
    current: list[Word] = []
    for word in sorted(words, key=lambda w: w.start):
        if current and (current[-1].text.endswith(SENTENCE_END) or word.start - current[-1].end > pause_s):
            segments.append(Segment(current[0].speaker, tuple(current)))
            current = []
        current.append(word)
    if current:
        segments.append(Segment(current[0].speaker, tuple(current)))
    return tuple(segments)


@dataclass(frozen=True)
class _Piece:
    """Where one region lies in a packed chunk: chunk seconds [chunk_start, chunk_end) = track ``track_start``."""

    chunk_start: float
    chunk_end: float
    track_start: float


def _split_long(regions: Iterable[SpeechRegion], limit: float) -> list[SpeechRegion]:
    out: list[SpeechRegion] = []
    for region in regions:
        parts = max(1, int(np.ceil(region.duration / limit)))
        step = region.duration / parts
        out += [SpeechRegion(region.start + i * step, region.start + (i + 1) * step) for i in range(parts)]
    return out


def _pack(regions: Sequence[SpeechRegion], settings: TranscribeSettings) -> list[list[SpeechRegion]]:
    chunks: list[list[SpeechRegion]] = []
    current: list[SpeechRegion] = []
    length = 0.0
    for region in regions:
        if current and length + settings.gap_s + region.duration > settings.chunk_s:
            chunks.append(current)
            current, length = [], 0.0
        length += (settings.gap_s if current else 0.0) + region.duration
        current.append(region)
    if current:
        chunks.append(current)
    return chunks


# Decoding a chunk's whole span in one ffmpeg call is cheaper than one call per region, up to this span.
_MAX_SPAN_S = 90.0
# Transcription streams the track in blocks of this length.
_STREAM_BLOCK_S = 60.0


def _decode_chunk(path: Path, chunk: Sequence[SpeechRegion], gap_s: float, *,
                  what: str) -> tuple[np.ndarray, list[_Piece]]:
    first, last = chunk[0].start, chunk[-1].end
    span = decode(path, what=what, start=first, duration=last - first) if last - first <= _MAX_SPAN_S else None
    parts = []
    for region in chunk:
        if span is not None:
            lo = int(round((region.start - first) * ANALYSIS_RATE))
            parts.append(span[lo:lo + int(round(region.duration * ANALYSIS_RATE))])
        else:
            parts.append(decode(path, what=what, start=region.start, duration=region.duration))
    return _assemble(list(chunk), parts, np.zeros(int(round(gap_s * ANALYSIS_RATE)), dtype=np.float32))


def _chunks(path: Path, chunks: list[list[SpeechRegion]], gap_s: float, *,
            what: str) -> Iterator[tuple[np.ndarray, list[_Piece]]]:
    """The packed audio of every chunk, and where its regions lie, from one streamed decode of the track: only
    the block being read and the chunk being packed are held, however long the track."""
    if not chunks:
        return
    gap = np.zeros(int(round(gap_s * ANALYSIS_RATE)), dtype=np.float32)
    pending = [(region, n) for n, chunk in enumerate(chunks) for region in chunk]
    parts: list[list[np.ndarray]] = [[] for _ in chunks]
    at = 0  # samples of the track before the current block
    index = 0  # next region to cut
    current = np.zeros(0, dtype=np.float32)  # what the current region holds so far
    last = max(r.end for r, _ in pending)
    for block in decode_blocks(path, what=what, block_s=_STREAM_BLOCK_S, duration=last + 1.0):
        end = at + block.size
        while index < len(pending):
            region, n = pending[index]
            lo, hi = int(round(region.start * ANALYSIS_RATE)), int(round(region.end * ANALYSIS_RATE))
            if lo >= end:
                break
            current = np.concatenate([current, block[max(0, lo - at):max(0, min(hi, end) - at)]])
            if hi > end:
                break  # the region goes on in the next block
            parts[n].append(current)
            current = np.zeros(0, dtype=np.float32)
            index += 1
            if index == len(pending) or pending[index][1] != n:
                yield _assemble(chunks[n], parts[n], gap)
                parts[n] = []
        at = end
    if index < len(pending):  # the track ended inside a region (or before it): what was decoded is used
        n = pending[index][1]
        parts[n].append(current)
        parts[n] += [np.zeros(0, dtype=np.float32) for _, m in pending[index + 1:] if m == n]
        audio, pieces = _assemble(chunks[n], parts[n], gap)
        if audio.size:
            yield audio, pieces


def _assemble(chunk: list[SpeechRegion], parts: list[np.ndarray], gap: np.ndarray) -> tuple[np.ndarray, list[_Piece]]:
    pieces: list[_Piece] = []
    joined: list[np.ndarray] = []
    at = 0
    for region, audio in zip(chunk, parts, strict=True):
        if joined:
            joined.append(gap)
            at += gap.size
        pieces.append(_Piece(at / ANALYSIS_RATE, (at + audio.size) / ANALYSIS_RATE, region.start))
        joined.append(audio)
        at += audio.size
    return (np.concatenate(joined) if joined else np.zeros(0, dtype=np.float32)), pieces


def _transcribe_batch(batch: list[tuple[np.ndarray, list[_Piece]]], model: SpeechModel, language: str,
                      settings: TranscribeSettings, offset: float, speaker: str, *, what: str) -> list[Word]:
    """Run packed chunks through the batched model; map every kept word back to the room clock."""
    clips, starts, at = [], [], 0
    for audio, _ in batch:
        starts.append(at / ANALYSIS_RATE)
        clips.append({"start": at / ANALYSIS_RATE, "end": (at + audio.size) / ANALYSIS_RATE})
        at += audio.size
    joined = np.concatenate([audio for audio, _ in batch])
    first, last = batch[0][1][0].track_start, batch[-1][1][-1].track_start
    try:
        raw = model._transcribe_batch(joined, clips, language, settings)
    except Exception as exc:  # translate whatever the model raises, in one place
        raise TranscriptionError(f"{what}: Whisper failed on {first:.1f}-{last:.1f} s: {exc}") from exc
    words: list[Word] = []
    for n, (_audio, pieces) in enumerate(batch):
        begin, end = starts[n], starts[n] + clips[n]["end"] - clips[n]["start"]
        segments = [seg for seg in raw if begin - 1e-6 <= (seg.start + seg.end) / 2 < end + 1e-6]
        shifted = [_Shifted(w, begin) for w in _kept(_by_region(segments, pieces, begin), settings)]
        words += _to_words(shifted, pieces, offset, speaker)
    return words


@dataclass(frozen=True)
class _Shifted:
    """A word of a batched result, on its chunk's clock."""

    word_: Any
    shift: float

    @property
    def start(self) -> float:
        return float(self.word_.start) - self.shift

    @property
    def end(self) -> float:
        return float(self.word_.end) - self.shift

    @property
    def word(self) -> str:
        return str(self.word_.word)

    @property
    def probability(self) -> float:
        return float(self.word_.probability)


@dataclass(frozen=True)
class _RegionSegment:
    """One region's share of a batched segment: the segment's scores, the words spoken in that region, so the
    word-level guards judge each stretch of speech on its own."""

    text: str
    words: list[Any]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float


def _by_region(segments: list[Any], pieces: Sequence[_Piece], shift: float) -> list[_RegionSegment]:
    out: list[_RegionSegment] = []
    for seg in segments:
        groups: dict[int, list[Any]] = {}
        for w in seg.words or ():
            groups.setdefault(pieces.index(_piece_of(float(w.start) - shift, float(w.end) - shift, pieces)),
                              []).append(w)
        for index in sorted(groups):
            words = groups[index]
            text = "".join(w.word for w in words)
            out.append(_RegionSegment(text, words, seg.avg_logprob, seg.no_speech_prob,
                                      min(seg.compression_ratio, _compression_ratio(text)), seg.temperature or 0.0))
    return out


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _kept(segments: Iterable[Any], settings: TranscribeSettings) -> list[Any]:
    """Whisper's words from the segments that pass the hallucination guards, with repetition loops cut."""
    words: list[Any] = []
    for seg in segments:
        if seg.avg_logprob < settings.log_prob_threshold and (
                seg.no_speech_prob > settings.no_speech_threshold or (seg.temperature or 0.0) >= _LAST_TEMPERATURE):
            continue  # Whisper heard no speech, or every temperature fallback failed its own log-prob test
        if seg.compression_ratio > settings.compression_ratio_threshold or _ANNOTATION.match(seg.text.strip()):
            continue
        seg_words = [w for w in seg.words or () if _norm(w.word) and not _ANNOTATION.match(w.word.strip())]
        if not seg_words or np.mean([w.probability for w in seg_words]) < settings.min_word_probability:
            continue
        if _anomalous(seg_words):
            continue
        words += seg_words
    return cut_loops(words, key=lambda w: _norm(w.word))


def _anomalous(words: Sequence[Any]) -> bool:
    """faster-whisper's own test for invented text (used by its ``hallucination_silence_threshold``): improbable
    words, and words too short or stretched over seconds, in the first 8 words of a segment."""
    score = 0.0
    for w in words[:8]:
        duration = w.end - w.start
        score += (w.probability < 0.15) + max(0.0, (0.133 - duration) * 15) + max(0.0, duration - 2.0)
    return score >= 3 or score + 0.01 >= len(words[:8])


def cut_loops(items: list[Any], *, key: Any = str, max_n: int = 8) -> list[Any]:
    """Collapse an n-gram repeated back to back (4+ times, or 3+ times for n >= 4) to its first occurrence."""
    keys = [key(i) for i in items]
    out: list[Any] = []
    i = 0
    while i < len(items):
        n, repeats = _loop_at(keys, i, max_n)
        out += items[i:i + n]
        i += n * repeats
    return out


def _loop_at(keys: list[Any], i: int, max_n: int) -> tuple[int, int]:
    """(n, repeats) of the repetition loop starting at ``i``, or (1, 1) when there is none."""
    for n in range(1, min(max_n, len(keys) - i) + 1):
        gram = keys[i:i + n]
        repeats = 1
        while keys[i + repeats * n:i + (repeats + 1) * n] == gram:
            repeats += 1
        if repeats >= 4 or (n >= 4 and repeats >= 3):
            return n, repeats
    return 1, 1


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def _piece_of(start: float, end: float, pieces: Sequence[_Piece]) -> _Piece:
    """The region a word at ``start``-``end`` (chunk seconds) belongs to: the one its middle falls in, unless the
    word reaches on into the silence after that region, and then the next one. Whisper pulls a word's start early
    into the silence before it, never its end late: the first word of a region was put 7 s early on the room
    clock, at the end of the previous one, both with its middle in the silence and (batched, next to a quiet
    region) with its middle at the end of that region and its end in the silence."""
    middle = (start + end) / 2
    for n, piece in enumerate(pieces):
        if middle < piece.chunk_end and (end <= piece.chunk_end + _LATE_END_S or n == len(pieces) - 1):
            return piece
    return pieces[-1]


# How far a word may end after its region's end (word timing is quantised to 20 ms).
_LATE_END_S = 0.1


def _to_words(raw: Iterable[Any], pieces: Sequence[_Piece], offset: float, speaker: str) -> list[Word]:
    """Map chunk-clock words to the room clock through the region each word's middle falls in (or the next)."""
    words = []
    for w in raw:
        piece = _piece_of(w.start, w.end, pieces)
        start = min(max(w.start, piece.chunk_start), piece.chunk_end)
        end = min(max(w.end, start), piece.chunk_end)
        shift = offset + piece.track_start - piece.chunk_start
        words.append(Word(round(float(start + shift), 3), round(float(end + shift), 3), w.word.strip(), speaker,
                          round(float(w.probability), 3)))
    return words
