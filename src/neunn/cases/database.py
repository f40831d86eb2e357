"""Open the case store: the database (SQLite in the store folder by default, or PostgreSQL) and its image folder.

    store = open_store(Path("~/.local/share/neunn").expanduser())                 # SQLite: STORE/cases.sqlite
    store = open_store(store_dir, db_url="postgresql://neunn@db.lab/neunn")       # the same schema on PostgreSQL
    store = open_store(store_dir, create=False)     # an existing store only (read-only commands): else NeunnError
    with store.transaction() as db:                                                # one SQLAlchemy session, committed
        ...

Opening migrates the database to the newest schema (Alembic; several processes starting together on PostgreSQL take
turns under an advisory lock). SQLite runs in WAL mode with synchronous=FULL: a committed decision survives a killed
server and a power cut. The default folder is ``$NEUNN_STORE``, else ``$XDG_DATA_HOME/neunn``, else
``~/.local/share/neunn``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from neunn.cases.images import ImageStore
from neunn.errors import NeunnError

SQLITE_NAME = "cases.sqlite"
_MIGRATION_LOCK = 0x6E65756E6E  # "neunn": the PostgreSQL advisory lock key that serialises migrations


def default_store_dir() -> Path:
    if os.environ.get("NEUNN_STORE"):
        return Path(os.environ["NEUNN_STORE"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "neunn"


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NeunnError(f"Cannot read the database URL {url!r}; use e.g. postgresql://user@host/dbname.") from None
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() in ("", "psycopg2") and "+" not in parsed.drivername:
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver NeuNN installs
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    if parsed.get_backend_name() != "sqlite":
        raise NeunnError(f"The case store runs on SQLite or PostgreSQL, not {parsed.get_backend_name()}.")
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # transactions begin below, not in the sqlite3 module
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        # Take the write lock at the start: a transaction that read a case then writes it cannot find it changed
        # by another process in between (SQLite would fail it instead); other writers wait up to busy_timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("neunn.cases") / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default), keeping every row."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        command.upgrade(_alembic_config(connection), revision)


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass
class CaseStore:
    url: str
    engine: Engine
    images: ImageStore
    _sessions: sessionmaker

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on leaving the block, or rolled back on an exception."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def describe(self) -> str:
        """Where the store is, without the password."""
        return f"{make_url(self.url).render_as_string(hide_password=True)} (images in {self.images.root})"


def open_store(store_dir: Path | None = None, *, db_url: str | None = None, migrate_to: str = "head",
               create: bool = True) -> CaseStore:
    """Open the case store and migrate its database to the newest schema.

    With ``create`` a new store (folder, database file, schema) is made where there is none; without it (commands that
    only read) a missing store is a one-sentence error and nothing is written.
    """
    store_dir = Path(store_dir) if store_dir is not None else default_store_dir()
    if create:
        _make_store_folder(store_dir)
    url = db_url or f"sqlite:///{(store_dir / SQLITE_NAME).resolve()}"
    engine = _engine(url)
    try:
        if not create:
            _require_existing(engine, store_dir if db_url is None else None)
        migrate(engine, migrate_to)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise NeunnError(f"Cannot open the case database {make_url(url).render_as_string(hide_password=True)} "
                         f"({reason}).") from None
    return CaseStore(url, engine, ImageStore(store_dir / "images"), sessionmaker(engine, expire_on_commit=False))


def _make_store_folder(store_dir: Path) -> None:
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        (store_dir / "images").mkdir(exist_ok=True)
    except OSError as exc:
        raise NeunnError(f"Cannot create the case store folder {store_dir} ({exc.strerror or exc}); "
                         "choose another with --store.") from None


def _require_existing(engine: Engine, store_dir: Path | None) -> None:
    """Refuse a database that holds no case store, without creating one (SQLite makes a missing file on connecting,
    so that is checked first). ``store_dir`` names the store in the error for the default SQLite database."""
    where = store_dir if store_dir is not None else engine.url.render_as_string(hide_password=True)
    database = engine.url.database
    missing_file = engine.dialect.name == "sqlite" and (not database or database == ":memory:"
                                                         or not Path(database).is_file())
    if missing_file or schema_revision(engine) is None:
        engine.dispose()
        raise NeunnError(f"There is no case store at {where}; add its first user with `neunn users add NAME --role "
                         "admin` to make one, or give the --store (or --db) of an existing one.")
