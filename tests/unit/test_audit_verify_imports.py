"""``audit verify`` runs where agentboard's server does not: importing the verifier must
load the standard library and its own modules, nothing else (docs/audit.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("psycopg", "eventsourcing", "litestar", "nats", "msgspec", "pydantic")
# In a fresh interpreter (this one has loaded everything already): the heavy modules
# present after the import, then every module from outside the standard library that is
# not the verifier's own (``__mp_main__`` is multiprocessing's name for ``__main__``).
PROBE = f"""
import sys
import projections.audit.verify
loaded = set(sys.modules)
print(" ".join(sorted(name for name in {HEAVY!r} if name in loaded)))
print(" ".join(sorted(
    name for name in loaded
    if name.partition(".")[0] not in sys.stdlib_module_names
    and name.partition(".")[0] not in ("__main__", "__mp_main__")
    and name not in ("projections", "projections.audit")
    and not name.startswith("projections.audit.")
)))
"""


def test_the_verifier_imports_only_the_standard_library() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    heavy, foreign = probe.stdout.split("\n")[:2]
    assert heavy == "", f"importing the verifier loads {heavy}"
    assert foreign == "", f"importing the verifier loads more than the standard library: {foreign}"
