"""A tracked exporter: a projection of the log whose work is telling the outside world
(webhook messages to deliver, traces to a collector) rather than keeping a read model.

It runs on the same machinery as a view (a page per transaction, with its tracking
record), with two differences:

- when its tracking table is first made it starts at the log's head, not at 0: turning
  one on tells the world about what happens from then on, not about the whole history;
- it is never rebuilt (it is not in ``VIEWS``): replaying the log would tell the world
  everything a second time.
"""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.application import ExecutionService
from projections.engine.view import APPLICATION, LOCK_SCHEMA, SCHEMA_LOCK, ViewRecorder

EVENTS_TABLE = f"{ExecutionService.name}_events"
TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL AS found"
START_AT_HEAD = (
    "UPDATE {tracking} SET notification_id = "
    f"(SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}) "
    "WHERE application_name = %s"
)


class ExporterRecorder(ViewRecorder):
    tables = ()
    create_tables = ()

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(LOCK_SCHEMA, (SCHEMA_LOCK,))
        row = curs.execute(TABLE_EXISTS, (self.tracking_table_name,)).fetchone()
        super()._create_table(curs)
        if not (row and row["found"]):
            curs.execute(self.sql(START_AT_HEAD), (APPLICATION,))
