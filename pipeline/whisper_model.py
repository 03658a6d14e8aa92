"""The Whisper model behind transcription: its settings, loading it once per process, and the calls into it.

faster-whisper's own types stay inside this module and :mod:`pipeline.transcribe`: callers get
:class:`SpeechModel` and our transcript types.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE
from pipeline.devices import CPU_BATCH_SIZE
from pipeline.errors import TranscriptionError
from pipeline.models import ModelRef

log = logging.getLogger(__name__)


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
    - ``batch_size=2``: chunks transcribed together by faster-whisper's batched pipeline (one encoder pass and one
      beam search for the batch), never with the previous text as a prompt. On a 10-minute track of six chunks
      (tiny.en, one thread) batches of 1, 4 and 8 took 8.6 s, 8.1 s and 8.0 s; on another, batches of 2, 4 and 8
      took 9.3 s, 9.2 s and 9.4 s, while the worker's peak memory grew from 470 MB to 560 MB and 730 MB (the
      model's own buffers grow with the batch): 2 keeps the speed, and leaves room in a worker for the voice
      encoder (a 10-minute, 6-speaker room: 0.77 GB for the largest process with 2, 0.90 GB with 4).
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
    batch_size: int = CPU_BATCH_SIZE
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
