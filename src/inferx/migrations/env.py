from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from inferx.tables import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    # Autogenerate from the command line: a plain sync engine is enough.
    from sqlalchemy import create_engine

    url = config.get_main_option("sqlalchemy.url") or ""
    engine = create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))
    with engine.connect() as conn:
        run(conn)
        conn.commit()
else:
    run(connection)
