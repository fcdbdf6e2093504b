"""The deployment's audit key: signs the manifest of every audit export (HMAC-SHA256).

Kept beside the admin key, in ``<data dir>/audit.key`` (64 hex characters, readable by
its owner only), made on first use. Every API process of one deployment must read the
same file. Whoever holds it can check a signature, and could also make one: HMAC proves
that an export came from a holder of the key, not from whom among them (docs/audit.md).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

AUDIT_KEY_FILE = "audit.key"


class AuditKeyError(Exception):
    """The key file cannot be read, or does not hold a key."""


def audit_key_path(data_dir: Path) -> Path:
    return data_dir / AUDIT_KEY_FILE


def read_audit_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise AuditKeyError(f"cannot read the audit key {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        text = ""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise AuditKeyError(f"{path} does not hold an audit key (hex, 32 bytes or more)")
    return key


def ensure_audit_key(data_dir: Path) -> bytes:
    """The deployment's key, made (mode 0600) when there is none yet."""
    path = audit_key_path(data_dir)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{AUDIT_KEY_FILE}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)  # whole or not at all; if another process won, use its key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return read_audit_key(path)
