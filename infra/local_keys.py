"""API keys as a client on this machine sees them: the roles a key can have, and the files of
the data dir that hold the local stack's keys (which the CLI reads when no key is set).

Standard library only: the CLI needs these to show ``keys create --role`` and to find its
key, and importing the key store (``infra.keys``: psycopg, eventsourcing) would cost every
verb a few tenths of a second (docs/cli.md, "Start time").
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

ADMIN_KEY_FILE = "admin.key"
WORKER_KEY_FILE = "worker.key"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    WORKER = "worker"
    ADMIN = "admin"


def read_key_file(path: Path) -> str | None:
    """A key kept in a file of the data dir (``admin.key``, ``worker.key``), if there is one."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
