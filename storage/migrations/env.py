"""Alembic environment for the catalog: runs online against the connection handed over by
:func:`storage.migrations.upgrade` (``config.attributes["connection"]``) or, from the ``alembic`` command line,
against ``sqlalchemy.url`` / ``ROOMCAST_DATABASE_URL``."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from storage.catalog import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = os.environ.get("ROOMCAST_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set ROOMCAST_DATABASE_URL (or sqlalchemy.url in alembic.ini) to migrate a catalog")
    engine = create_engine(url)
    with engine.connect() as conn:
        run(conn)
    engine.dispose()
