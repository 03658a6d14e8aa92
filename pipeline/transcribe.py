"""Per-track transcription with faster-whisper: only the speech regions reach the model.

The speech regions of a track (``pipeline.vad``) are cut from one streamed decode of the track and packed, with
short silences between them, into chunks of at most ~30 s of audio: one chunk is one pass of Whisper's encoder,
which always works on 30 s windows. Measured on tiny.en with one thread on 8 espeak-ng sentences spread over a
120 s track, packing with 0.5 s gaps took 5.7-5.9 s at WER 0.05; one call per region took 10.1 s (WER 0.08),
``clip_timestamps`` over the decoded track 9.8 s (WER 0.09); gaps of 0.3 s or 1.0 s gave WER 0.12 and 0.09.
The packed chunks then go through faster-whisper's batched pipeline, 8 at a time: one encoder pass and one beam
search for the batch, without timestamp tokens, and no long-form loop that decodes a window again from its last
full sentence. Measured with tiny.en on one thread (beam 5) on two 10-minute tracks of one speaker in four (139 s
and 121 s of speech, Opus and FLAC): 9.2-9.7 s and 7.3-7.9 s wall, 8.2-8.6 s and 7.2-7.8 s CPU (plus 1.3 s and
0.4 s in ffmpeg), against 13.3-13.7 s and 11.0 s wall, 11.8-12.1 s and 9.8 s CPU (plus 2.2 s and 1.9 s in ffmpeg)
one chunk at a time through Whisper's long-form loop, with an ffmpeg call per chunk. WER 0.102 and 0.003 against
0.090 and 0.005; over the room's four tracks 0.058 against 0.052 on average (tiny.en hears a word or two per
track differently, in both directions). Every word time is mapped back through the packing to the room clock.

faster-whisper's own types stay inside this module: callers get :class:`SpeechModel` and our transcript types.
"""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
from pipeline.errors import TranscriptionError
from pipeline.loudness import ride_gain
from pipeline.models import ModelRef
from pipeline.transcript import Segment, TrackTranscript, Word
from pipeline.vad import SpeechRegion

log = logging.getLogger(__name__)

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
# Whisper's captions for sounds it heard instead of words: "[Music]", "(upbeat music)", "♪ ♪", "*coughs*".
_ANNOTATION = re.compile(r"^\W*(\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫#\s-]+)\W*$")


@dataclass(frozen=True)
class TranscribeSettings:
    """How tracks are transcribed. Defaults suit per-speaker tracks on a CPU worker.

    - ``compute_type="int8"``, ``cpu_threads=1``, ``device="cpu"``: one worker process per core.
    - ``beam_size=5``: Whisper's own default; greedy (1) was 15-20% faster on tiny.en, at WER 0.08 against 0.07.
    - ``log_prob_threshold=-1.0``: a chunk whose average token log-probability is lower is dropped. Whisper
      would decode it again at higher temperatures; the batched pipeline has no such fallback, so low-confidence
      text is dropped rather than retried (speech scored -0.07 to -0.2 on our test rooms; noise and tones that
      Whisper turned into words, -1.3 to -1.8).
    - ``compression_ratio_threshold=2.4``: text that compresses this well is a repetition loop.
    - ``chunk_s=29.5``, ``gap_s=0.5``: packed speech per chunk (Whisper's window is 30 s) and silence between
      packed regions; a longer region is cut where it is quietest.
    - ``batch_size=4``: chunks transcribed together by faster-whisper's batched pipeline (one encoder pass and one
      beam search for the batch), never with the previous text as a prompt. On a 10-minute track of six chunks
      (tiny.en, one thread) batches of 1, 4 and 8 took 8.6 s, 8.1 s and 8.0 s; on another, batches of 2, 4 and 8
      took 9.3 s, 9.2 s and 9.4 s, while the worker's peak memory grew from 470 MB to 560 MB and 730 MB (the
      model's own buffers grow with the batch): 4 keeps the speed and most of the memory.
    - ``pause_s=1.0``: a silence this long between words ends a segment (as does a sentence end).
    - ``min_word_probability=0.3``: a segment whose words average below this is dropped as noise.
    - ``level=False``: ride each region's gain to one level before Whisper hears it
      (:func:`pipeline.loudness.ride_gain`). A per-speaker track has one voice at one level; a mixed recording
      has voices 20 dB apart, and tiny.en passed over a whole quiet turn (0 of 21 words, against 21 of 21 levelled).
    """

    compute_type: str = "int8"
    cpu_threads: int = 1
    device: str = "cpu"
    beam_size: int = 5
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    chunk_s: float = 29.5
    gap_s: float = 0.5
    batch_size: int = 4
    pause_s: float = 1.0
    min_word_probability: float = 0.3
    level: bool = False


class SpeechModel:
    """A loaded Whisper model. ``calls`` and ``audio_s`` count what was fed to it (for logs and tests);
    ``runs_on`` says where it runs ("cpu/int8", "cuda/float16")."""

    def __init__(self, ref: ModelRef, whisper: Any, *, runs_on: str = "cpu/int8") -> None:
        self.ref = ref
        self.runs_on = runs_on
        self.english_only = bool(ref.english_only or not whisper.model.is_multilingual)
        self._whisper = whisper
        self.calls = 0
        self.audio_s = 0.0
        self._batched: Any = None

    def _transcribe_batch(self, audio: np.ndarray, clips: list[dict[str, float]], language: str,
                          settings: TranscribeSettings) -> list[Any]:
        """Transcribe the ``clips`` (seconds into ``audio``, each at most 30 s) together, ``batch_size`` at once."""
        self.calls += 1
        self.audio_s += audio.size / ANALYSIS_RATE
        if self._batched is None:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(self._whisper)
        self._batched.last_speech_timestamp = 0.0  # word timing state a failed call may have left behind
        segments, _info = self._batched.transcribe(
            audio, language=language, beam_size=settings.beam_size, word_timestamps=True, vad_filter=False,
            clip_timestamps=clips, batch_size=settings.batch_size, without_timestamps=True,
        )
        return list(segments)  # the generator does the work: run it here, inside the error translation

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
            _MODELS[key] = SpeechModel(ref, _load_whisper(ref, settings),
                                       runs_on=f"{settings.device}/{settings.compute_type}")
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


def detect_language(path: Path, regions: Sequence[SpeechRegion], model: SpeechModel, *, what: str = "",
                    audio: PcmCopy | None = None) -> str:
    """The language spoken in the longest speech of the track (up to 30 s of it); ``audio``: the track already
    decoded at 16 kHz, read instead of decoding it again."""
    what = what or str(path)
    if model.english_only:
        return "en"
    if not regions:
        raise TranscriptionError(f"{what}: no speech to detect the language from; set 'language' in room.json")
    settings = TranscribeSettings()
    chunk, _pieces = next(_chunks(path, _longest(regions, settings), settings, what=what, audio=audio),
                          (None, None))
    if chunk is None:
        raise TranscriptionError(f"{what}: the track ends before its speech; set 'language' in room.json")
    try:
        language, probability = model._detect_language(chunk)
    except Exception as exc:  # translate whatever the model raises, in one place
        raise TranscriptionError(f"{what}: language detection failed: {exc}") from exc
    log.info("%s: detected language %s (p=%.2f)", what, language, probability)
    return language


def transcribe_track(path: Path, regions: Sequence[SpeechRegion], *, track_index: int, speaker: str, offset: float,
                     model: SpeechModel, language: str | None, settings: TranscribeSettings = TranscribeSettings(),
                     what: str = "", audio: PcmCopy | None = None) -> TrackTranscript:
    """Transcribe the speech regions of one track; every word on the room clock and tagged with ``speaker``.
    ``audio``: the track already decoded at 16 kHz (by its analysis), read instead of decoding it again."""
    what = what or str(path)
    check_language(model, language, what=what)
    if not regions:
        return TrackTranscript(track_index, speaker, language or "und", ())
    # Whisper knows "en", not "en-GB": a room's regional tag is reduced to its language.
    language = language.split("-")[0].lower() if language else detect_language(path, regions, model, what=what,
                                                                                audio=audio)
    words: list[Word] = []
    for batch in _batches(_chunks(path, regions, settings, what=what, audio=audio), settings.batch_size):
        words += _transcribe_batch(batch, model, language, settings, offset, speaker, what=what)
    segments = split_segments(words, pause_s=settings.pause_s)
    log.info("%s: %d words in %d segments from %.1f s of speech (on %s)", what, len(words), len(segments),
             sum(r.duration for r in regions), model.runs_on)
    return TrackTranscript(track_index, speaker, language, segments)


def _longest(regions: Sequence[SpeechRegion], settings: TranscribeSettings) -> list[SpeechRegion]:
    """The longest regions that fit one chunk together (or the longest alone, whose first part is used)."""
    chosen: list[SpeechRegion] = []
    length = 0.0
    for region in sorted(regions, key=lambda r: r.duration, reverse=True):
        length += (settings.gap_s if chosen else 0.0) + region.duration
        if chosen and length > settings.chunk_s:
            break
        chosen.append(region)
    return chosen


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


# Transcription streams the track in blocks of this length.
_STREAM_BLOCK_S = 60.0
# A region longer than a chunk is cut in the middle of its quietest 100 ms (five 20 ms frames: longer than the
# closure of a stop consonant, shorter than a breath) within this far (at most a quarter of a chunk) before each of
# the points that would cut it evenly.
_CUT_WINDOW_S = 3.0
_CUT_FRAME = ANALYSIS_RATE // 50
_CUT_FRAMES = 5


def _chunks(path: Path, regions: Sequence[SpeechRegion], settings: TranscribeSettings, *, what: str,
            audio: PcmCopy | None = None) -> Iterator[tuple[np.ndarray, list[_Piece]]]:
    """The packed chunks of a track's speech, from one streamed decode of it (or from ``audio``, the track
    already decoded at 16 kHz): only the block being read, the part of a region being cut and the chunk being
    packed are held, however long the track or its regions."""
    regions = _merged(regions)
    if not regions:
        return
    if audio is not None:
        if audio.rate != ANALYSIS_RATE:
            raise ValueError(f"transcription reads {ANALYSIS_RATE} Hz audio, not {audio.rate} Hz")
        blocks = audio.blocks(_STREAM_BLOCK_S)
    else:
        blocks = decode_blocks(path, what=what, block_s=_STREAM_BLOCK_S, duration=regions[-1].end + 0.1)
    parts = _parts(_slices(blocks, regions), regions, settings.chunk_s)
    if settings.level:
        parts = ((at, ride_gain(part, ANALYSIS_RATE)) for at, part in parts)
    yield from _packed(parts, settings)


def _merged(regions: Iterable[SpeechRegion]) -> list[SpeechRegion]:
    """Regions sorted, overlapping ones joined: the stream passes each moment of the track once."""
    out: list[SpeechRegion] = []
    for region in sorted(regions, key=lambda r: r.start):
        if out and region.start < out[-1].end:  # touching regions (cut at a voice change) stay apart
            region = SpeechRegion(out[-1].start, max(out[-1].end, region.end))
            out.pop()
        out.append(region)
    return out


def _sample(seconds: float) -> int:
    return int(round(seconds * ANALYSIS_RATE))


def _slices(blocks: Iterable[np.ndarray], regions: Sequence[SpeechRegion]) -> Iterator[tuple[int, np.ndarray]]:
    """(region index, audio) for each stretch of a region within a block, in track order: a region that spans
    blocks comes in several slices; a track that ends early ends its last regions early."""
    index, at = 0, 0  # next region to cut; track samples before the current block
    for block in blocks:
        end = at + block.size
        while index < len(regions):
            lo, hi = _sample(regions[index].start), _sample(regions[index].end)
            if lo >= end:
                break
            yield index, block[max(0, lo - at):max(0, min(hi, end) - at)]
            if hi > end:
                break  # the region goes on in the next block
            index += 1
        at = end


def _parts(slices: Iterable[tuple[int, np.ndarray]], regions: Sequence[SpeechRegion],
           limit_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(track seconds, audio) of every region, in parts of at most ``limit_s``: the batched pipeline transcribes
    only the first 30 s of a clip, so a longer region is cut, near even points, where it is quietest. Each part is
    a copy: a part waiting to be packed keeps no decoded block alive."""
    index, start = -1, 0  # the region being cut, and the track sample its held audio starts at
    held = np.zeros(0, dtype=np.float32)
    cuts: list[int] = []
    for n, audio in slices:
        if n != index:
            if held.size:
                yield start / ANALYSIS_RATE, held.copy()
            index, start, held, cuts = n, _sample(regions[n].start), audio, _cut_points(regions[n], limit_s)
        else:
            held = np.concatenate([held, audio])
        while cuts and start + held.size >= cuts[0]:
            cut = _quiet_cut(held, cuts.pop(0) - start, _sample(_cut_window(limit_s)))
            yield start / ANALYSIS_RATE, held[:cut].copy()
            start, held = start + cut, held[cut:]
    if held.size:
        yield start / ANALYSIS_RATE, held.copy()


def _cut_points(region: SpeechRegion, limit_s: float) -> list[int]:
    """Track samples near which a region longer than ``limit_s`` is cut: parts end within the cut window before
    each point, so none is longer than ``limit_s``."""
    if region.duration <= limit_s:
        return []
    parts = int(np.ceil(region.duration / (limit_s - _cut_window(limit_s))))
    return [_sample(region.start + i * region.duration / parts) for i in range(1, parts)]


def _cut_window(limit_s: float) -> float:
    return min(_CUT_WINDOW_S, limit_s / 4)


def _quiet_cut(audio: np.ndarray, point: int, window: int) -> int:
    """The middle of the quietest stretch of ``audio`` in the ``window`` samples before ``point``."""
    lo = max(0, point - window)
    frames = (point - lo) // _CUT_FRAME
    if frames < _CUT_FRAMES:
        return point
    energy = np.square(audio[lo:lo + frames * _CUT_FRAME].reshape(frames, _CUT_FRAME)).sum(axis=1)
    stretches = np.convolve(energy, np.ones(_CUT_FRAMES), mode="valid")
    return lo + int(np.argmin(stretches)) * _CUT_FRAME + _CUT_FRAMES * _CUT_FRAME // 2


def _packed(parts: Iterable[tuple[float, np.ndarray]],
            settings: TranscribeSettings) -> Iterator[tuple[np.ndarray, list[_Piece]]]:
    """Parts packed in track order, ``gap_s`` of silence between them, into chunks of at most ``chunk_s``."""
    gap, limit = _sample(settings.gap_s), _sample(settings.chunk_s)
    held: list[tuple[float, np.ndarray]] = []
    length = 0
    for start, audio in parts:
        if held and length + gap + audio.size > limit:
            yield _assemble(held, gap)
            held, length = [], 0
        length += (gap if held else 0) + audio.size
        held.append((start, audio))
    if held:
        yield _assemble(held, gap)


def _assemble(parts: list[tuple[float, np.ndarray]], gap: int) -> tuple[np.ndarray, list[_Piece]]:
    pieces: list[_Piece] = []
    joined: list[np.ndarray] = []
    at = 0
    for start, audio in parts:
        if joined:
            joined.append(np.zeros(gap, dtype=np.float32))
            at += gap
        pieces.append(_Piece(at / ANALYSIS_RATE, (at + audio.size) / ANALYSIS_RATE, start))
        joined.append(audio)
        at += audio.size
    return np.concatenate(joined), pieces


def _batches(chunks: Iterable[tuple[np.ndarray, list[_Piece]]],
             size: int) -> Iterator[list[tuple[np.ndarray, list[_Piece]]]]:
    iterator = iter(chunks)
    while batch := list(islice(iterator, max(1, size))):
        yield batch


def _transcribe_batch(batch: list[tuple[np.ndarray, list[_Piece]]], model: SpeechModel, language: str,
                      settings: TranscribeSettings, offset: float, speaker: str, *, what: str) -> list[Word]:
    """Run packed chunks through the batched model; map every kept word back to the room clock. A region that
    Whisper passed over (see :func:`_passed_over`) is transcribed again on its own, and the pass that heard more of
    it is kept."""
    heard = _heard(batch, model, language, settings, what=what)
    words = [w for kept, _counts in heard for w in kept]
    again = _passed_over(batch, heard)
    if again:
        log.info("%s: Whisper passed over speech in a packed chunk: transcribing %d region(s) again, each alone", what,
                 len(again))
        retried: list[tuple[list[_ChunkWord], dict[_Piece, int]]] = []
        for chunks in _batches([chunk for chunk, _first in again], settings.batch_size):
            retried += _heard(chunks, model, language, settings, what=what)
        for (_chunk, first), (kept, _counts) in zip(again, retried, strict=True):
            if len(kept) > sum(w.piece == first for w in words):
                words = [w for w in words if w.piece != first] + kept
    return _to_words(words, offset, speaker)


def _heard(batch: list[tuple[np.ndarray, list[_Piece]]], model: SpeechModel, language: str,
           settings: TranscribeSettings, *, what: str) -> list[tuple[list[_ChunkWord], dict[_Piece, int]]]:
    """For each chunk of ``batch``: the words that pass the guards, and how many words Whisper gave each region
    before the guards."""
    clips, at = [], 0
    for audio, _ in batch:
        clips.append({"start": at / ANALYSIS_RATE, "end": (at + audio.size) / ANALYSIS_RATE})
        at += audio.size
    try:
        raw = model._transcribe_batch(np.concatenate([audio for audio, _ in batch]), clips, language, settings)
    except Exception as exc:  # translate whatever the model raises, in one place
        first, last = batch[0][1][0], batch[-1][1][-1]
        end = last.track_start + last.chunk_end - last.chunk_start
        raise TranscriptionError(f"{what}: Whisper failed on {first.track_start:.1f}-{end:.1f} s: {exc}") from exc
    out = []
    for (_audio, pieces), clip in zip(batch, clips, strict=True):
        begin, end = clip["start"], clip["end"]
        segments = _by_region([seg for seg in raw if begin - 1e-6 <= (seg.start + seg.end) / 2 < end + 1e-6],
                              pieces, begin)
        counts = {piece: 0 for piece in pieces}
        for seg in segments:
            for w in seg.words:
                counts[w.piece] += 1
        out.append((_kept(segments, settings), counts))
    return out


# Whisper sometimes passes over a sentence of a packed chunk: its text goes on from the next region, and the words
# it does give are spread over the skipped region by the word alignment. Seen on a 10-minute room: the same 5 s
# sentence passed over in two places of one chunk (no word for one, three words for the other, whose text was the
# next region's), and nowhere else. A region of at least _RETRY_MIN_S that got words at under _RETRY_SPARSE of the
# rate of the rest of its chunk, where that rate is speech's (_SPEECH_WORDS_PER_S or more), is transcribed again on
# its own, and so is the region after it in its chunk (whose first words went to the skipped one). Words that the
# guards dropped count as heard, and a chunk of noise that Whisper turned into a word or two is not retried.
_RETRY_MIN_S = 1.0
_RETRY_SPARSE = 0.3
_SPEECH_WORDS_PER_S = 1.0


def _passed_over(batch: list[tuple[np.ndarray, list[_Piece]]],
                 heard: list[tuple[list[_ChunkWord], dict[_Piece, int]]]) -> list[tuple[tuple[np.ndarray,
                                                                                              list[_Piece]], _Piece]]:
    """The regions of ``batch`` to transcribe again, each as a chunk of its own, with the region it was."""
    out = []
    for (audio, pieces), (_words, counts) in zip(batch, heard, strict=True):
        again: set[int] = set()
        total_words = sum(counts.values())
        total_s = sum(p.chunk_end - p.chunk_start for p in pieces)
        for n, piece in enumerate(pieces):
            length = piece.chunk_end - piece.chunk_start
            others_s = total_s - length
            rate = (total_words - counts[piece]) / others_s if others_s > 0 else 0.0
            if length >= _RETRY_MIN_S and rate >= _SPEECH_WORDS_PER_S and counts[piece] < _RETRY_SPARSE * rate * length:
                again.update(i for i in (n, n + 1) if i < len(pieces))
        for n in sorted(again):
            piece = pieces[n]
            lo, hi = _sample(piece.chunk_start), _sample(piece.chunk_end)
            out.append((_assemble([(piece.track_start, audio[lo:hi])], 0), piece))
    return out


@dataclass(frozen=True)
class _ChunkWord:
    """A word of a batched result, on its chunk's clock, and the region it was spoken in."""

    word: str
    start: float
    end: float
    probability: float
    piece: _Piece


@dataclass(frozen=True)
class _RegionSegment:
    """One region's share of a batched segment: the segment's scores, the words spoken in that region, so the
    word-level guards judge each stretch of speech on its own."""

    text: str
    words: list[_ChunkWord]
    avg_logprob: float
    compression_ratio: float


def _by_region(segments: list[Any], pieces: Sequence[_Piece], shift: float) -> list[_RegionSegment]:
    out: list[_RegionSegment] = []
    previous: _ChunkWord | None = None
    for seg in segments:
        groups: dict[_Piece, list[_ChunkWord]] = {}
        for w in seg.words or ():
            start, end, text = float(w.start) - shift, float(w.end) - shift, str(w.word)
            previous = _ChunkWord(text, start, end, float(w.probability), _piece_of(start, end, text, previous, pieces))
            groups.setdefault(previous.piece, []).append(previous)
        for piece in sorted(groups, key=lambda p: p.chunk_start):
            words = groups[piece]
            text = "".join(w.word for w in words)
            out.append(_RegionSegment(text, words, seg.avg_logprob,
                                      min(seg.compression_ratio, _compression_ratio(text))))
    return out


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _kept(segments: Iterable[Any], settings: TranscribeSettings) -> list[Any]:
    """Whisper's words from the segments that pass the hallucination guards, with repetition loops cut."""
    words: list[Any] = []
    for seg in segments:
        if seg.avg_logprob < settings.log_prob_threshold:
            continue  # low confidence: Whisper heard no speech, or would have retried at a higher temperature
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
    words, and words too short or stretched over seconds, in the first 8 words of a segment. A word Whisper is
    sure of (probability 0.5 or more) is not held short: in a packed chunk the aligner gives the first word of a
    region, or of a sentence, no duration at all ("I", "Simple" at 0.97 and 0.98), and two of those had a whole
    region of speech dropped."""
    score = 0.0
    for w in words[:8]:
        duration = w.end - w.start
        short = max(0.0, (0.133 - duration) * 15) if w.probability < 0.5 else 0.0
        score += (w.probability < 0.15) + short + max(0.0, duration - 2.0)
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


def _piece_of(start: float, end: float, text: str, previous: _ChunkWord | None,
              pieces: Sequence[_Piece]) -> _Piece:
    """The region a word at ``start``-``end`` (chunk seconds) was spoken in, ``previous`` being the word before it.

    Whisper stretches words over the silence of the packing. Of 25 words that reached into a gap on four 10-minute
    tracks, 22 were a region's last word, ending up to 0.4 s into the gap; 3 were the next region's first word,
    starting in the gap or in the last 0.3 s of the region before, mostly in the gap and the next region. Next to a
    quiet region (bleed that Whisper did not transcribe) a first word lay wholly over that region's end and the
    gap. So a word belongs to the region holding most of it (the next one, if it lies wholly in a gap), unless it
    reaches on into the gap after that region and starts an utterance there: the region's first word or the one
    after a sentence end, itself no sentence end. That word belongs to the next region.
    """
    best, most = None, 0.0
    for piece in pieces:
        inside = min(end, piece.chunk_end) - max(start, piece.chunk_start)
        if inside > most:
            best, most = piece, inside
    if best is None:
        middle = (start + end) / 2
        return next((piece for piece in pieces if middle < piece.chunk_end), pieces[-1])
    after = pieces.index(best) + 1
    late = after < len(pieces) and end > best.chunk_end + _LATE_END_S
    starts = previous is None or previous.piece != best or previous.word.strip().endswith(SENTENCE_END)
    return pieces[after] if late and starts and not text.strip().endswith(SENTENCE_END) else best


# How far a word may end after its region's end (word timing is quantised to 20 ms).
_LATE_END_S = 0.1


def _to_words(raw: Iterable[_ChunkWord], offset: float, speaker: str) -> list[Word]:
    """Map chunk-clock words to the room clock through the region each was spoken in (see :func:`_piece_of`)."""
    words = []
    for w in raw:
        piece = w.piece
        start = min(max(w.start, piece.chunk_start), piece.chunk_end)
        end = min(max(w.end, start), piece.chunk_end)
        shift = offset + piece.track_start - piece.chunk_start
        words.append(Word(round(start + shift, 3), round(end + shift, 3), w.word.strip(), speaker,
                          round(w.probability, 3)))
    return words
