"""Glue between settings and :mod:`pipeline.transcribe`: one model per process, room-level language choice."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from pipeline.analysis import TrackAnalysis
from pipeline.audio import PcmCopy, decode_blocks
from pipeline.devices import choose_device
from pipeline.models import resolve_model
from pipeline.room import Room, Track
from pipeline.transcribe import SpeechModel, TranscribeSettings, detect_language, load_model, transcribe_track
from pipeline.transcript import TrackTranscript
from pipeline.vad import BLOCK_S, SpeechRegion, VadSettings, speech_regions_in
from workers.config import Settings

log = logging.getLogger(__name__)

# Language detection listens to the first minutes of the longest track: enough speech, little decoding.
DETECT_WINDOW_S = 300.0


def speech_model(settings: Settings) -> SpeechModel:
    """The Whisper model these settings name, loaded once per process."""
    ref = resolve_model(settings.model, cache_dir=settings.model_cache)
    return load_model(ref, _transcribe_settings(settings))


def runs_on(settings: Settings) -> str:
    """Where these settings' model runs here ("cpu/int8", "cuda/float16"), loading it if need be."""
    return speech_model(settings).runs_on


def _transcribe_settings(settings: Settings) -> TranscribeSettings:
    device = choose_device(settings.device)
    return TranscribeSettings(cpu_threads=settings.cpu_threads, device=device.name,
                              compute_type=device.compute_type, batch_size=device.batch_size,
                              beam_size=settings.beam_size)


def detect_room_language(settings: Settings, room: Room) -> str:
    """The room's language, detected once from the speech of its longest consenting track."""
    track = max(room.published_tracks, key=lambda t: t.info.duration)
    what = f"room {room.id!r}: {track.file}"
    # Only the window is decoded and scanned: a 3-hour track costs no more than a 5-minute one here.
    window = decode_blocks(track.path, what=what, block_s=BLOCK_S, duration=DETECT_WINDOW_S)
    regions = speech_regions_in(window, VadSettings())
    language = detect_language(track.path, regions, speech_model(settings))
    log.info("room %s: detected language %s from %s", room.id, language, track.file)
    return language


def transcribe(settings: Settings, room: Room, track: Track, analysis: TrackAnalysis, language: str | None, *,
               audio: PcmCopy | None = None, cuts: Sequence[float] = ()) -> TrackTranscript:
    """``audio``: the analysis's 16 kHz decode of the track, read instead of decoding the track again. A part of
    a mixed recording is transcribed with its regions cut at the voice changes ``cuts`` (track seconds) and its
    gain ridden to one level (:class:`pipeline.transcribe.TranscribeSettings`)."""
    regions = split_regions(analysis.regions, cuts) if cuts else analysis.regions
    options = replace(_transcribe_settings(settings), level=room.is_mixed)
    return transcribe_track(
        track.path, regions, track_index=track.index, speaker=track.speaker, offset=track.start,
        model=speech_model(settings), language=language or room.language, settings=options,
        what=f"room {room.id!r}: {track.file}", audio=audio,
    )


def split_regions(regions: Sequence[SpeechRegion], cuts: Sequence[float]) -> tuple[SpeechRegion, ...]:
    """``regions`` cut at ``cuts`` (seconds on the same clock)."""
    out: list[SpeechRegion] = []
    for region in regions:
        at = region.start
        for cut in sorted(c for c in cuts if region.start < c < region.end):
            out.append(SpeechRegion(at, cut))
            at = cut
        out.append(SpeechRegion(at, region.end))
    return tuple(out)
