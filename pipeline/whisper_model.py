"""The Whisper model behind transcription: its settings, loading it once per process, and the calls into it.

faster-whisper's own types stay inside this module and :mod:`pipeline.transcribe`: callers get
:class:`SpeechModel` and our transcript types.
"""

from __future__ import annotations

import functools
import logging
import math
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
    - ``chunk_s=24.0``, ``gap_s=0.5``, ``tail_s=3.0``, ``min_window_s=20.0``: packed speech per chunk, silence
      between packed regions (a longer region is cut where it is quietest), and the silence after a chunk's speech
      that Whisper's encoder hears, in a window of at least 20 s. Whisper pads every chunk to a 30 s window, and
      its encoder's cost grows faster than the window (its attention is quadratic); CTranslate2 takes a shorter
      window, so each batch's window is cut to its longest chunk plus ``tail_s`` (see
      :func:`_window_cut_pipeline`). Measured with tiny.en on one thread over three 10-minute rooms of 4, 3 and 6
      speakers, against chunks of up to 29.5 s, each in a 30 s window, in batches of 2 (medians of interleaved
      runs): 15.4 s of transcription CPU against 19.1 s, 13.7 s against 14.8 s and 13.2 s against 15.8 s, at WER
      0.054, 0.055 and 0.099 against 0.056, 0.059 and 0.103 (700-706 s of windows against 780-840 s); with
      ``base``, on two of the rooms, 19.7 s against 26.3 s and 23.3 s against 26.7 s, at WER 0.048 against 0.043
      (about 10 more words wrong in 1,700) and 0.068 against 0.071. Word times
      moved by a median of 10 ms, and every word's middle stayed in its turn. A tail of 0 s lost words (WER 0.078
      against 0.056); tails of 2 s and 4 s gave WER 0.051-0.106 and 0.055-0.103; chunks of 22 s and 26 s gave
      0.039-0.101 and 0.054-0.090 (chunks of 22 s cut more sentences). Short windows are where Whisper goes wrong:
      a 4 s sentence alone in a 7 s window was written twice, and the next one's "doubled after" became "will
      now turn" in windows of 7 s to 15 s; from 20 s it is heard as in 30 s. The 20 s floor cost the rooms 12-34 s
      of windows, and the same CPU within the machine's noise (WER 0.053, 0.054 and 0.099).
    - ``batch_size=1`` on a CPU: chunks transcribed together by faster-whisper's batched pipeline (one encoder pass
      and one beam search for the batch), never with the previous text as a prompt. Batching saves little on one
      thread (batches of 1, 4 and 8 took 8.6 s, 8.1 s and 8.0 s on a 10-minute track in 30 s windows), and a batch
      is encoded in its longest chunk's window: with cut windows, batches of 2 took 15.8 s of CPU where batches of
      1 took 14.3 s, on the same room. One chunk at a time also keeps a worker's memory low (the model's buffers grow
      with the batch: 470 MB with 2, 560 MB with 4, 730 MB with 8 on 30 s windows), leaving room for the voice
      encoder. A GPU takes larger batches (:mod:`pipeline.devices`).
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
    chunk_s: float = 24.0
    gap_s: float = 0.5
    tail_s: float = 3.0
    min_window_s: float = 20.0
    batch_size: int = CPU_BATCH_SIZE
    pause_s: float = 1.0
    min_word_probability: float = 0.3
    level: bool = False


class SpeechModel:
    """A loaded Whisper model. ``calls`` and ``audio_s`` count what was fed to it and ``window_s`` the seconds of
    window its encoder ran over (for logs and tests); ``runs_on`` says where it runs ("cpu/int8", "cuda/float16")."""

    def __init__(self, ref: ModelRef, whisper: Any, *, runs_on: str = "cpu/int8") -> None:
        self.ref = ref
        self.runs_on = runs_on
        self.english_only = bool(ref.english_only or not whisper.model.is_multilingual)
        self._whisper = whisper
        self.calls = 0
        self.audio_s = 0.0
        self._batched: Any = None

    @property
    def window_s(self) -> float:
        return self._batched.window_frames / _FRAMES_PER_S if self._batched is not None else 0.0

    def _transcribe_batch(self, audio: np.ndarray, clips: list[dict[str, float]], language: str,
                          settings: TranscribeSettings) -> list[Any]:
        """Transcribe the ``clips`` (seconds into ``audio``, each at most 30 s) together, ``batch_size`` at once."""
        self.calls += 1
        self.audio_s += audio.size / ANALYSIS_RATE
        if self._batched is None:
            self._batched = _window_cut_pipeline()(self._whisper)
        self._batched.last_speech_timestamp = 0.0  # word timing state a failed call may have left behind
        self._batched.tail_frames = round(settings.tail_s * _FRAMES_PER_S)
        self._batched.least_frames = round(settings.min_window_s * _FRAMES_PER_S)
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


_FRAMES_PER_S = 100  # Whisper's log-mel frames: one every 10 ms


@functools.cache
def _window_cut_pipeline() -> type:
    """faster-whisper's batched pipeline, with each batch's window cut to its longest chunk plus ``tail_frames``,
    and to no less than ``least_frames`` (both set by :class:`SpeechModel` from the settings of each call).

    The pipeline pads every chunk's log-mel features with zeros to Whisper's 3000 frames (30 s) before the encoder;
    the frames cut here are only that padding, so the encoder and the decoder's cross-attention work on what was
    said and a short silence after it (see ``TranscribeSettings``). Word alignment gets each chunk's length from the
    pipeline, rounded up to a whole second: inside the cut window while ``tail_frames`` is a second or more. Built
    on first use: importing faster-whisper is left to the processes that transcribe."""
    from faster_whisper import BatchedInferencePipeline

    class WindowCut(BatchedInferencePipeline):
        tail_frames: int
        least_frames: int
        window_frames = 0  # frames the encoder has run over, every chunk of a batch counted

        def forward(self, features: np.ndarray, tokenizer: Any, chunks_metadata: list[dict[str, Any]],
                    options: Any) -> Any:
            longest = max(math.ceil(chunk["duration"] * _FRAMES_PER_S) for chunk in chunks_metadata)
            frames = min(features.shape[-1], max(longest + self.tail_frames, self.least_frames))
            self.window_frames += frames * features.shape[0]
            return super().forward(features[..., :frames], tokenizer, chunks_metadata, options)

    return WindowCut


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
