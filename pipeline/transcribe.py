"""Per-track transcription with faster-whisper: only the speech regions reach the model.

The speech regions of a track (``pipeline.vad``) are cut from one streamed decode of the track and packed, with
short silences between them, into chunks of at most ``chunk_s`` of audio: one chunk is one pass of Whisper's
encoder, over a window cut to the chunk's speech and a short silence after it (``TranscribeSettings``). Measured on
tiny.en with one thread on 8 espeak-ng sentences spread over a 120 s track, packing with 0.5 s gaps took 5.7-5.9 s
at WER 0.05; one call per region took 10.1 s (WER 0.08), ``clip_timestamps`` over the decoded track 9.8 s (WER
0.09); gaps of 0.3 s or 1.0 s gave WER 0.12 and 0.09. The packed chunks then go through faster-whisper's batched
pipeline (one chunk at a time on a CPU): one encoder pass and one beam search for a batch, without timestamp tokens,
and no long-form loop that decodes a window again from its last full sentence. Measured with tiny.en on one thread
(beam 5) on two 10-minute tracks of one speaker in four (139 s and 121 s of speech, Opus and FLAC): 9.2-9.7 s and
7.3-7.9 s wall, 8.2-8.6 s and 7.2-7.8 s CPU (plus 1.3 s and 0.4 s in ffmpeg), against 13.3-13.7 s and 11.0 s wall,
11.8-12.1 s and 9.8 s CPU (plus 2.2 s and 1.9 s in ffmpeg) one chunk at a time through Whisper's long-form loop,
with an ffmpeg call per chunk. WER 0.102 and 0.003 against 0.090 and 0.005; over the room's four tracks 0.058
against 0.052 on average (tiny.en hears a word or two per track differently, in both directions). Every word time is
mapped back through the packing to the room clock.
The packing lives in :mod:`pipeline.packing`, the model in :mod:`pipeline.whisper_model` and the guards over
Whisper's words in :mod:`pipeline.whisper_words`; faster-whisper's own types stay inside these modules: callers get
:class:`SpeechModel` and our transcript types.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.audio import ANALYSIS_RATE, PcmCopy
from pipeline.errors import TranscriptionError
from pipeline.packing import Piece, assemble, batches, longest_regions, speech_chunks, to_sample
from pipeline.transcript import TrackTranscript, Word
from pipeline.vad import SpeechRegion
from pipeline.whisper_model import SpeechModel, TranscribeSettings, check_language, load_model
from pipeline.whisper_words import (
    SENTENCE_END,
    ChunkWord,
    by_region,
    cut_loops,
    kept_words,
    split_segments,
    to_room_words,
)

__all__ = ["SENTENCE_END", "SpeechModel", "TranscribeSettings", "check_language", "cut_loops", "detect_language",
           "load_model", "split_segments", "transcribe_track"]

log = logging.getLogger(__name__)


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
    chunk, _pieces = next(speech_chunks(path, longest_regions(regions, settings), settings, what=what, audio=audio),
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
    for batch in batches(speech_chunks(path, regions, settings, what=what, audio=audio), settings.batch_size):
        words += _transcribe_batch(batch, model, language, settings, offset, speaker, what=what)
    segments = split_segments(words, pause_s=settings.pause_s)
    log.info("%s: %d words in %d segments from %.1f s of speech (on %s)", what, len(words), len(segments),
             sum(r.duration for r in regions), model.runs_on)
    return TrackTranscript(track_index, speaker, language, segments)


def _transcribe_batch(batch: list[tuple[np.ndarray, list[Piece]]], model: SpeechModel, language: str,
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
        retried: list[tuple[list[ChunkWord], dict[Piece, int]]] = []
        for chunks in batches([chunk for chunk, _first in again], settings.batch_size):
            retried += _heard(chunks, model, language, settings, what=what)
        for (_chunk, first), (kept, _counts) in zip(again, retried, strict=True):
            if len(kept) > sum(w.piece == first for w in words):
                words = [w for w in words if w.piece != first] + kept
    return to_room_words(words, offset, speaker)


def _heard(batch: list[tuple[np.ndarray, list[Piece]]], model: SpeechModel, language: str,
           settings: TranscribeSettings, *, what: str) -> list[tuple[list[ChunkWord], dict[Piece, int]]]:
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
        segments = by_region([seg for seg in raw if begin - 1e-6 <= (seg.start + seg.end) / 2 < end + 1e-6],
                              pieces, begin)
        counts = {piece: 0 for piece in pieces}
        for seg in segments:
            for w in seg.words:
                counts[w.piece] += 1
        out.append((kept_words(segments, settings), counts))
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


def _passed_over(batch: list[tuple[np.ndarray, list[Piece]]],
                 heard: list[tuple[list[ChunkWord], dict[Piece, int]]]) -> list[tuple[tuple[np.ndarray,
                                                                                              list[Piece]], Piece]]:
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
            lo, hi = to_sample(piece.chunk_start), to_sample(piece.chunk_end)
            out.append((assemble([(piece.track_start, audio[lo:hi])], 0), piece))
    return out
