"""The catalog on a real SQLite file, and the same tests on a real PostgreSQL server (marker ``postgres``)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.errors import StorageError
from storage.catalog import Catalog
from storage.records import AssetRecord, PersonRecord, ShowRecord, SpeakerRecord, TrackRecord

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SHOW = ShowRecord(id="founders-hour", title="Founders Hour", author="Alice Martin", owner_name="Alice Martin",
                  owner_email="alice@example.com", description="Talks about shipping audio products.", max_items=3)
SPEAKERS = (SpeakerRecord("u1", "Alice Martin", "host"), SpeakerRecord("u2", "Bob Okafor", "speaker"),
            SpeakerRecord("u3", "Chloé Dubois", "speaker", consent=False))
TRACKS = (TrackRecord("u1", "tracks/u1.opus", 0.0, 120.0), TrackRecord("u2", "tracks/u2-a.wav", 12.48, 60.5))
T0 = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a server URL without a database name."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed (Debian package postgresql)")
    folder = tmp_path_factory.mktemp("pg")
    as_postgres: list[str] = []
    restore: dict[Path, int] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user in a folder it can reach
        as_postgres = ["runuser", "-u", "postgres", "--"]
        for parent in [folder, *folder.parents][:-1]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                restore[parent] = stat.S_IMODE(mode)
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-A", "trust", "-U", "roomcast", "-D", str(data)],
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"),
                    "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://roomcast@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        for parent, mode in restore.items():
            parent.chmod(mode)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'catalog.sqlite'}"
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"rc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    catalog = Catalog(database_url)
    catalog.upsert_show(SHOW)
    yield catalog
    catalog.close()


def add_episode(catalog: Catalog, episode_id: str, *, title: str = "A room", visibility: str = "public",
                recorded_at: datetime | None = T0, input_hash: str = "hash-1") -> None:
    catalog.upsert_episode(episode_id=episode_id, show_id=SHOW.id, title=title, description="", language="en",
                           visibility=visibility, recorded_at=recorded_at, speakers=SPEAKERS, tracks=TRACKS,
                           input_hash=input_hash)


def test_shows_are_created_and_updated(catalog: Catalog) -> None:
    assert catalog.get_show(SHOW.id) == SHOW
    catalog.upsert_show(replace(SHOW, title="Founders Hour (new)", explicit=True, max_items=10))
    stored = catalog.get_show(SHOW.id)
    assert stored is not None and (stored.title, stored.explicit, stored.max_items) == ("Founders Hour (new)", True, 10)
    assert catalog.get_show("nobody") is None


def test_private_token_is_long_random_and_kept(catalog: Catalog, database_url: str) -> None:
    token = catalog.ensure_private_token(SHOW.id)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert catalog.ensure_private_token(SHOW.id) == token
    catalog.upsert_show(replace(SHOW, private_token="guessable"))  # a show update never replaces the token
    assert catalog.get_show(SHOW.id).private_token == token
    catalog.upsert_show(replace(SHOW, id="other-show"))
    assert catalog.ensure_private_token("other-show") != token
    reopened = Catalog(database_url)
    assert reopened.ensure_private_token(SHOW.id) == token
    reopened.close()
    with pytest.raises(StorageError, match="'nobody' does not exist"):
        catalog.ensure_private_token("nobody")


def test_episode_guid_is_stable_and_persons_are_the_consenting_speakers(catalog: Catalog, database_url: str) -> None:
    add_episode(catalog, "room-1", title="First title")
    first = catalog.get_episode("room-1")
    assert first is not None and uuid.UUID(first.guid).version == 5
    add_episode(catalog, "room-1", title="Second title")
    reopened = Catalog(database_url)
    second = reopened.get_episode("room-1")
    reopened.close()
    assert second is not None and second.title == "Second title" and second.guid == first.guid
    assert second.persons == (PersonRecord("Alice Martin", "host"), PersonRecord("Bob Okafor", "speaker"))
    add_episode(catalog, "room-2")
    assert catalog.get_episode("room-2").guid != first.guid


def test_datetimes_come_back_in_utc(catalog: Catalog) -> None:
    paris = datetime(2026, 11, 23, 19, 0, tzinfo=timezone(timedelta(hours=1)))
    add_episode(catalog, "room-1", recorded_at=paris)
    new_york = datetime(2026, 11, 23, 16, 0, tzinfo=timezone(timedelta(hours=-5)))
    catalog.mark_published("room-1", 61.5, published_at=new_york)
    episode = catalog.get_episode("room-1")
    assert episode is not None and episode.recorded_at == paris and episode.recorded_at.utcoffset() == timedelta(0)
    assert episode.published_at == datetime(2026, 11, 23, 21, 0, tzinfo=UTC) and episode.duration_s == 61.5


def test_stages_failures_and_jobs(catalog: Catalog) -> None:
    add_episode(catalog, "room-1", input_hash="inputs-a")
    catalog.set_stage("room-1", "mixing", 0.25)
    episode = catalog.get_episode("room-1")
    assert episode is not None and (episode.status, episode.stage, episode.progress) == ("processing", "mixing", 0.25)
    [job] = catalog.jobs("room-1")
    assert (job.status, job.stage, job.progress, job.input_hash) == ("running", "mixing", 0.25, "inputs-a")

    catalog.set_failed("room-1", "ffmpeg failed on tracks/u2-a.wav")
    failed = catalog.get_episode("room-1")
    assert failed is not None and failed.status == "failed" and "u2-a.wav" in failed.error
    [job] = catalog.jobs("room-1")
    assert job.status == "failed" and job.finished_at is not None and "u2-a.wav" in job.error

    add_episode(catalog, "room-1", input_hash="inputs-a")  # a retry clears the error and opens a new job
    add_episode(catalog, "room-1", input_hash="inputs-b")  # a newer run replaces one still running
    latest, abandoned, first = catalog.jobs("room-1")
    assert (latest.status, abandoned.status, first.status) == ("running", "abandoned", "failed")
    assert catalog.get_episode("room-1").error == ""
    assert catalog.finished_job("room-1", "inputs-b") is None
    catalog.mark_published("room-1", 60.0)
    done = catalog.finished_job("room-1", "inputs-b")
    assert done is not None and done.id == latest.id and done.status == "done"
    assert catalog.finished_job("room-1", "inputs-a") is None


def test_a_room_that_failed_before_the_catalog_knew_it_is_recorded(catalog: Catalog) -> None:
    catalog.set_failed("broken-room", "room 'broken-room' is invalid")
    episode = catalog.get_episode("broken-room")
    assert episode is not None and episode.status == "failed" and episode.visibility == "unlisted"
    assert catalog.feed_episodes(SHOW.id, "unlisted") == []


def test_assets_are_replaced_as_a_set(catalog: Catalog) -> None:
    add_episode(catalog, "room-1")
    mp3 = AssetRecord("replay.mp3", "shows/founders-hour/episodes/room-1/replay.mp3", 5_000_000_000, "audio/mpeg",
                      "0" * 32)
    vtt = AssetRecord("transcript.vtt", "shows/founders-hour/episodes/room-1/transcript.vtt", 900, "text/vtt")
    catalog.record_assets("room-1", [mp3, vtt])
    assert catalog.get_episode("room-1").asset("replay.mp3") == mp3  # > 2 GiB kept
    catalog.record_assets("room-1", [vtt])
    assert catalog.get_episode("room-1").assets == (vtt,)
    with pytest.raises(StorageError, match="'missing' does not exist") as caught:
        catalog.record_assets("missing", [vtt])
    assert not caught.value.transient


def test_first_publication_date_is_kept(catalog: Catalog) -> None:
    add_episode(catalog, "room-1")
    catalog.mark_published("room-1", 60.0, published_at=T0)
    add_episode(catalog, "room-1", title="Re-processed")
    catalog.mark_published("room-1", 61.0, published_at=T0 + timedelta(days=3))
    episode = catalog.get_episode("room-1")
    assert episode is not None and episode.published_at == T0 and episode.duration_s == 61.0
    catalog.mark_unpublished("room-1")
    assert catalog.get_episode("room-1").status == "unpublished"
    assert catalog.feed_episodes(SHOW.id, "public") == []
    catalog.mark_published("room-1", 61.0)
    assert [e.published_at for e in catalog.feed_episodes(SHOW.id, "public")] == [T0]


def test_feed_episodes_newest_first_capped_by_visibility(catalog: Catalog) -> None:
    for day in (1, 4, 2, 5):
        add_episode(catalog, f"day-{day}", recorded_at=T0 + timedelta(days=day))
        catalog.mark_published(f"day-{day}", 60.0, published_at=T0 + timedelta(days=10))
    add_episode(catalog, "no-date", recorded_at=None)  # ordered by its publication date instead
    catalog.mark_published("no-date", 60.0, published_at=T0 + timedelta(days=3))
    add_episode(catalog, "in-progress", recorded_at=T0 + timedelta(days=9))  # never published
    for visibility in ("unlisted", "private"):
        add_episode(catalog, visibility, visibility=visibility, recorded_at=T0 + timedelta(days=8))
        catalog.mark_published(visibility, 60.0)

    assert [e.id for e in catalog.feed_episodes(SHOW.id, "public")] == ["day-5", "day-4", "no-date"]  # max_items=3
    catalog.upsert_show(replace(SHOW, max_items=10))
    assert [e.id for e in catalog.feed_episodes(SHOW.id, "public")] == ["day-5", "day-4", "no-date", "day-2",
                                                                         "day-1"]
    assert [e.id for e in catalog.feed_episodes(SHOW.id, "private")] == ["private"]
    assert [e.id for e in catalog.feed_episodes(SHOW.id, "unlisted")] == ["unlisted"]
    assert catalog.feed_episodes("other-show", "public") == []
    assert {e.id for e in catalog.list_episodes(SHOW.id)} >= {"in-progress", "day-1", "private"}


def test_bad_input_and_unusable_databases_are_storage_errors(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="visibility 'secret'"):
        add_episode(catalog, "room-1", visibility="secret")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot open it"):
        Catalog(f"sqlite:///{tmp_path / 'a-file' / 'catalog.sqlite'}")


@pytest.mark.postgres
def test_a_stopped_postgres_is_a_transient_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot open it") as caught:
        Catalog(f"postgresql+psycopg://roomcast@127.0.0.1:{port}/roomcast?connect_timeout=3")
    assert caught.value.transient and time.monotonic() - started < 10


def test_head_revision_is_the_newest_migration() -> None:
    """The revision a catalog is checked against without Alembic is the newest of the migration scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage.migrations import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def _opened_in_a_new_process(database_url: str) -> bool:
    """Open the catalog at ``database_url`` in a new process; whether that loaded Alembic."""
    probe = ("import sys; from storage.catalog import Catalog; Catalog(sys.argv[1]).close(); "
             "print('alembic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, database_url], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=True)
    return done.stdout.strip() == "True"


def _revision(database_url: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def _another_database(database_url: str, tmp_path: Path) -> str:
    """An empty database beside ``database_url``'s, on the same kind of server."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other' / 'catalog.sqlite'}"
    import psycopg

    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{server.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}_b")
    return f"{server}/{name}_b"


def _schema(database_url: str) -> dict[str, object]:
    """Every table's columns (name, type, nullability), primary key, foreign keys and indexes."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                "primary_key": found.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"]), f.get("options", {}).get("ondelete"))
                                       for f in found.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in found.get_indexes(table)),
            } for table in sorted(found.get_table_names())}
    finally:
        engine.dispose()


def test_a_new_catalog_is_made_at_the_newest_revision_without_alembic(database_url: str) -> None:
    """An empty database gets its tables and the newest revision without loading Alembic; opening it again finds
    it at that revision with one query."""
    from storage.migrations import HEAD_REVISION

    assert not _opened_in_a_new_process(database_url)
    assert _revision(database_url) == [HEAD_REVISION]
    assert not _opened_in_a_new_process(database_url)
    assert Catalog(database_url).list_episodes() == []


def test_a_new_catalog_has_the_schema_the_migrations_build(database_url: str, tmp_path: Path) -> None:
    """The tables made from the models for a new catalog are the ones Alembic's migration scripts build, so a
    catalog made either way is upgraded alike by the next revision (a model changed without a migration fails
    here)."""
    from sqlalchemy import create_engine

    from storage.migrations import upgrade

    Catalog(database_url).close()
    migrated = _another_database(database_url, tmp_path)
    (tmp_path / "other").mkdir(exist_ok=True)
    engine = create_engine(migrated)
    upgrade(engine)
    engine.dispose()
    made, built = _schema(database_url), _schema(migrated)
    assert {"shows", "episodes", "speakers", "tracks", "assets", "jobs", "alembic_version"} <= set(made)
    assert made == built
    assert _revision(database_url) == _revision(migrated)


INITIAL_TABLES = {"shows", "episodes", "speakers", "tracks", "assets", "jobs"}  # revision 0001


def test_a_catalog_made_before_migrations_is_stamped_and_kept(database_url: str) -> None:
    """A catalog with the tables but no version table (made before migrations existed) is stamped with the initial
    revision by Alembic and upgraded, its rows kept."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from storage.migrations import HEAD_REVISION, INITIAL_REVISION, MIGRATIONS

    if database_url.startswith("sqlite"):
        Path(database_url.partition(":///")[2]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as conn:  # as an old roomcast left it: the initial schema, a show, no version table
        config.attributes["connection"] = conn
        command.upgrade(config, INITIAL_REVISION)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO shows (id, title, author, owner_name, owner_email, description, language, "
                          "category, explicit, max_items, locked) VALUES (:id, :title, :author, :author, :email, "
                          ":description, 'en', 'Technology', false, 3, :locked)"),
                     {"id": SHOW.id, "title": SHOW.title, "author": SHOW.author, "email": SHOW.owner_email,
                      "description": SHOW.description, "locked": SHOW.locked})
    engine.dispose()

    assert _opened_in_a_new_process(database_url)  # Alembic stamps and upgrades it
    assert _revision(database_url) == [HEAD_REVISION]
    assert Catalog(database_url).get_show(SHOW.id) == SHOW
