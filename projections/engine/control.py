"""What operators and other processes need to know about the views, kept in PostgreSQL:
each view's health (running, halted on a bad event, restarting after an error) and the
explicit rule for skipping a stored event a view cannot apply.

A skip is a row naming the view, the log position and the reason, recorded by a person
(``agentboard projections skip VIEW POSITION --reason ...``). Runners and rebuilds apply
the same skips, so a rebuilt view still equals the live one. Nothing is ever skipped
without such a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresDatastore

from projections.engine.errors import InvalidQuery

log = logging.getLogger(__name__)

CREATE_HEALTH = """
CREATE TABLE IF NOT EXISTS projection_health (
    view text PRIMARY KEY,
    state text NOT NULL,
    error text,
    error_position bigint,
    restarts bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
CREATE_SKIPS = """
CREATE TABLE IF NOT EXISTS projection_skips (
    view text NOT NULL,
    position bigint NOT NULL,
    topic text NOT NULL,
    reason text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (view, position)
)
"""
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(%s)"
UPSERT_HEALTH = """
INSERT INTO projection_health AS h (view, state, error, error_position, restarts, updated_at)
VALUES (%(view)s, %(state)s, %(error)s, %(error_position)s, %(restarts)s, now())
ON CONFLICT (view) DO UPDATE SET state = EXCLUDED.state, error = EXCLUDED.error,
    error_position = EXCLUDED.error_position, restarts = EXCLUDED.restarts, updated_at = now()
"""
SELECT_HEALTH = (
    "SELECT view, state, error, error_position, restarts, updated_at FROM projection_health"
)
INSERT_SKIP = """
INSERT INTO projection_skips (view, position, topic, reason) VALUES (%s, %s, %s, %s)
ON CONFLICT (view, position) DO UPDATE SET reason = EXCLUDED.reason, recorded_at = now()
"""
SELECT_SKIPS = "SELECT position FROM projection_skips WHERE view = %s"
SELECT_ALL_SKIPS = "SELECT view, position, topic, reason, recorded_at FROM projection_skips"
_SCHEMA_LOCK = 0x61627363


@dataclass(frozen=True, slots=True)
class Health:
    view: str
    state: str  # running, halted, restarting, stopped
    error: str | None
    error_position: int | None
    restarts: int
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Skip:
    view: str
    position: int
    topic: str
    reason: str
    recorded_at: datetime


class Control:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(LOCK_SCHEMA, (_SCHEMA_LOCK,))
            curs.execute(CREATE_HEALTH)
            curs.execute(CREATE_SKIPS)

    def record_health(
        self,
        view: str,
        state: str,
        *,
        error: str | None = None,
        error_position: int | None = None,
        restarts: int = 0,
    ) -> None:
        """Best effort: a view's health must never be the reason it stops."""
        params = {
            "view": view, "state": state, "error": error,
            "error_position": error_position, "restarts": restarts,
        }  # fmt: skip
        try:
            with self.datastore.get_connection() as conn:
                conn.execute(UPSERT_HEALTH, params)
        except Exception:
            log.warning("could not record the health of view %s", view, exc_info=True)

    def health(self) -> dict[str, Health]:
        with self.datastore.get_connection() as conn:
            rows = conn.execute(SELECT_HEALTH).fetchall()
        return {row["view"]: Health(**row) for row in rows}

    def skips(self, view: str) -> frozenset[int]:
        with self.datastore.get_connection() as conn:
            rows = conn.execute(SELECT_SKIPS, (view,)).fetchall()
        return frozenset(int(row["position"]) for row in rows)

    def all_skips(self) -> list[Skip]:
        with self.datastore.get_connection() as conn:
            rows = conn.execute(SELECT_ALL_SKIPS).fetchall()
        return [Skip(**row) for row in rows]

    def record_skip(
        self, recorder: ApplicationRecorder, view: str, position: int, reason: str
    ) -> Skip:
        """Tell ``view`` to pass over the stored event at ``position``. The event must
        exist; the reason is kept beside it for whoever asks later why."""
        if not reason.strip():
            raise InvalidQuery("a skip needs a reason")
        found = recorder.select_notifications(position, 1)
        if not found or found[0].id != position:
            raise InvalidQuery(f"there is no stored event at position {position}")
        with self.datastore.get_connection() as conn:
            conn.execute(INSERT_SKIP, (view, position, found[0].topic, reason))
        log.warning("recorded a skip: view %s passes over position %d (%s)", view, position, reason)
        return Skip(view, position, found[0].topic, reason, datetime.now().astimezone())
