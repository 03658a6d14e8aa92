"""Alembic migrations of the catalog: :class:`storage.catalog.Catalog` runs :func:`migrate` when it opens one.

New revision after changing the models: ``ROOMCAST_DATABASE_URL=sqlite:///scratch.sqlite alembic upgrade head``
then ``alembic revision --autogenerate -m "what changed"`` (``alembic.ini`` at the repository root), and set
HEAD_REVISION to it.
"""

from __future__ import annotations

import logging

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

MIGRATIONS = "storage:migrations"
INITIAL_REVISION = "0001"
# The newest revision in versions/ (a test holds it to Alembic's own view): a catalog already there is opened
# without loading Alembic and its scripts, about 0.3 s of every process that opens the catalog.
HEAD_REVISION = "0025"
MIGRATION_LOCK = 0x726F6F6D63617374  # PostgreSQL advisory lock key: workers starting together migrate one at a time


def migrate(engine: Engine, metadata: MetaData) -> None:
    """Bring the catalog's schema to the newest revision.

    - A catalog at HEAD_REVISION is left as it is (one query).
    - An empty database gets the tables of ``metadata`` (the models) and Alembic's version table at HEAD_REVISION,
      as Alembic's cookbook builds a database from scratch, without loading Alembic: a test holds this schema to
      the one the migration scripts build.
    - Any other catalog is upgraded by Alembic; one made before migrations existed (tables but no
      ``alembic_version``) holds exactly the initial schema and is stamped with it first.
    """
    if _at_head(engine):
        return
    try:
        with engine.begin() as conn:
            _lock(conn)
            if not inspect(conn).get_table_names():
                metadata.create_all(conn)
                version = _version_table()
                version.create(conn)
                conn.execute(version.insert().values(version_num=HEAD_REVISION))
                log.info("catalog: created at revision %s", HEAD_REVISION)
                return
    except SQLAlchemyError:
        if _at_head(engine):  # another process made it meanwhile (SQLite has no lock to wait on first)
            return
        raise
    upgrade(engine)


def upgrade(engine: Engine) -> None:
    """Upgrade the catalog to the newest revision with Alembic's migration scripts."""
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.begin() as conn:
        _lock(conn)
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        config.attributes["connection"] = conn
        if current is None and inspect(conn).has_table("episodes"):
            command.stamp(config, INITIAL_REVISION)
        log.info("catalog: migrating from %s to %s", current, head)
        command.upgrade(config, "head")


def _lock(conn: Connection) -> None:
    """Hold the migration lock for the rest of ``conn``'s transaction (PostgreSQL; SQLite locks the file itself)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def _version_table() -> Table:
    """Alembic's version table, as Alembic creates it."""
    return Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                 PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def _at_head(engine: Engine) -> bool:
    """Whether the catalog is at HEAD_REVISION, asked without Alembic."""
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()) == [HEAD_REVISION]
    except SQLAlchemyError:  # no version table yet: a new catalog, or one made before migrations existed
        return False
