"""roomcast's one configuration object, read at the entry points (CLI, worker) and passed down explicitly.

Sources, later ones winning: built-in defaults, an optional TOML file (``--config`` or ``ROOMCAST_CONFIG``, table
``[roomcast]`` or top level), ``ROOMCAST_*`` environment variables, then command-line options.
S3 endpoints and credentials are boto3's business (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import RoomcastError

DEFAULT_HOME = Path("roomcast-data")


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roomcast"


@dataclass(frozen=True)
class Settings:
    """Everything an entry point needs. ``store`` is a folder or ``s3://bucket/prefix``."""

    store: str = str(DEFAULT_HOME / "store")
    public_url: str | None = None
    database_url: str = f"sqlite:///{DEFAULT_HOME / 'catalog.sqlite'}"
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None
    model: str = "tiny.en"
    cache_dir: Path = dataclasses.field(default_factory=_default_cache)
    work_dir: Path = DEFAULT_HOME / "work"
    shows_config: Path | None = None
    cpu_threads: int = 1
    # Whisper's beam: 5, its own default; 1 (greedy) cost 15% less CPU for a whole 10-minute room with tiny.en on
    # the CPU, at WER 0.087 against 0.064 (tests/benchmarks/bench_transcribe.py's room).
    beam_size: int = 5
    # Where Whisper runs: "auto" (a CUDA GPU with float16 when CTranslate2 sees one, else the CPU with int8),
    # "cpu" or "cuda" (refused where there is no GPU).
    device: str = "auto"
    transcribe: bool = True
    # Publish the replay (with chapters from speaker turns) as soon as it is mixed, its transcripts in a second
    # publish of the same episode (workers.stages.PHASES); on by default for workers (roomcast worker).
    replay_first: bool = False
    min_chapter_s: float = 30.0
    channels: int = 1
    opus: bool = False
    # Keep a voice print of every speaker of a multitrack room in the show's voice library (catalog only), so
    # the show's mixed recordings name them; off, mixed recordings number their voices.
    voice_library: bool = True
    scan_interval_s: float = 300.0
    # An in-process run keeps each track decoded at the mixing rate while it is analysed, so the mix does not
    # decode it again, when the room's tracks take at most this much disk (4 GB: 6 hours of track time).
    keep_decoded_mb: int = 4096
    # Told when a public feed changes (workers.feedping): a Podping endpoint (with its token) and/or a WebSub hub.
    podping_url: str | None = None
    podping_token: str | None = None
    websub_hub: str | None = None
    # Crash recovery (docs/deployment.md): a running stage holds a lease of lease_s seconds, renewed every
    # lease_s / 5; every worker looks for expired leases every lease_check_s and enqueues their rooms again.
    lease_s: float = 45.0
    lease_check_s: float = 10.0
    # A stage running longer is stopped and its room failed; the soft limit (None: the hard one less a minute or a
    # tenth, whichever is shorter; 0: none) lets the stage record its failure itself first.
    stage_time_limit_s: float = 6 * 3600.0
    stage_soft_time_limit_s: float | None = None
    # Test hook, never for production: "point:seconds,..." makes a worker sleep at a named point (ingest, track,
    # finish, before-feed), so tests can stop a worker exactly there.
    test_pause: str = ""

    @property
    def lease_renew_s(self) -> float:
        return self.lease_s / 5

    @property
    def soft_time_limit_s(self) -> float | None:
        if self.stage_soft_time_limit_s is not None:
            return self.stage_soft_time_limit_s or None
        return self.stage_time_limit_s - min(60.0, self.stage_time_limit_s / 10)

    @property
    def model_cache(self) -> Path:
        return self.cache_dir / "models"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def flag(value: str) -> bool:
    """1/0, true/false, yes/no, on/off."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "ROOMCAST_STORE": ("store", str),
    "ROOMCAST_PUBLIC_URL": ("public_url", str),
    "ROOMCAST_DATABASE_URL": ("database_url", str),
    "ROOMCAST_BROKER_URL": ("broker_url", str),
    "ROOMCAST_RESULT_BACKEND": ("result_backend", str),
    "ROOMCAST_MODEL": ("model", str),
    "ROOMCAST_CACHE_DIR": ("cache_dir", Path),
    "ROOMCAST_WORK_DIR": ("work_dir", Path),
    "ROOMCAST_SHOWS": ("shows_config", Path),
    "ROOMCAST_CPU_THREADS": ("cpu_threads", int),
    "ROOMCAST_BEAM_SIZE": ("beam_size", int),
    "ROOMCAST_DEVICE": ("device", str),
    "ROOMCAST_MIN_CHAPTER_S": ("min_chapter_s", float),
    "ROOMCAST_CHANNELS": ("channels", int),
    "ROOMCAST_VOICE_LIBRARY": ("voice_library", flag),
    "ROOMCAST_REPLAY_FIRST": ("replay_first", flag),
    "ROOMCAST_KEEP_DECODED_MB": ("keep_decoded_mb", int),
    "ROOMCAST_PODPING_URL": ("podping_url", str),
    "ROOMCAST_PODPING_TOKEN": ("podping_token", str),
    "ROOMCAST_WEBSUB_HUB": ("websub_hub", str),
    "ROOMCAST_LEASE_S": ("lease_s", float),
    "ROOMCAST_LEASE_CHECK_S": ("lease_check_s", float),
    "ROOMCAST_STAGE_TIME_LIMIT_S": ("stage_time_limit_s", float),
    "ROOMCAST_STAGE_SOFT_TIME_LIMIT_S": ("stage_soft_time_limit_s", float),
    "ROOMCAST_TEST_PAUSE": ("test_pause", str),
}


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, the TOML file, the environment and ``overrides`` (None values are ignored)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or (Path(env["ROOMCAST_CONFIG"]) if env.get("ROOMCAST_CONFIG") else None)
    if path is not None:
        values.update(_from_toml(path))
    for name, (field, kind) in _ENV.items():
        if env.get(name):
            try:
                values[field] = kind(env[name])
            except ValueError as exc:
                what = getattr(kind, "__name__", "value")
                raise RoomcastError(f"{name}={env[name]!r} is not a valid {what}") from exc
    if "shows_config" not in values and Path("shows.toml").is_file():
        values["shows_config"] = Path("shows.toml")
    settings = Settings().replace(**values).replace(**overrides)
    for field, name in (("cpu_threads", "ROOMCAST_CPU_THREADS"), ("beam_size", "ROOMCAST_BEAM_SIZE")):
        if not isinstance(getattr(settings, field), int) or getattr(settings, field) < 1:
            raise RoomcastError(f"{field} ({name}) must be a whole number of at least 1, not "
                                f"{getattr(settings, field)!r}")
    return settings


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RoomcastError(f"configuration file {path}: {exc}") from exc
    table = data.get("roomcast", data)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    unknown = sorted(k for k in table if k not in fields and k != "shows")
    if unknown:
        raise RoomcastError(f"configuration file {path}: unknown setting(s) {', '.join(unknown)}")
    result: dict[str, Any] = {}
    for key, value in table.items():
        if key in fields:
            result[key] = Path(value) if key in ("cache_dir", "work_dir", "shows_config") else value
    return result
