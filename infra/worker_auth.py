"""Who may report work: every request to the command service carries an API key.

Workers send ``Authorization: Bearer <key>`` as a NATS header on each report. The key must
be of role ``worker`` (or ``admin``). A key of the deployment's own tenant (``default``,
whose admin also administers the deployment) reports for executions of every tenant, as
the worker that ``agentboard up`` runs does; a key of any other tenant only for its own
tenant's executions: another tenant's is refused as not existing (``Within``), and
nothing is recorded. A key made for some queues (``keys create --queue``) reports only for
executions on those queues (``QueueNotAllowed``). Keys are checked as the HTTP API checks
them (remembered for 30 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from domain.execution import commands as c
from infra.keys import KeyStore, Principal, Role

AUTHORIZATION = "Authorization"
REPORTERS = frozenset({Role.WORKER, Role.ADMIN})


class ReportRefused(Exception):
    """A report refused before the domain sees it; its class name travels in the reply."""


class Unauthenticated(ReportRefused):
    pass


class Forbidden(ReportRefused):
    pass


class ReportAuth:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def principal(self, headers: Mapping[str, str] | None) -> Principal:
        scheme, _, token = (headers or {}).get(AUTHORIZATION, "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "a worker report needs an API key of role worker in the header "
                "'Authorization: Bearer <key>' (agentboard keys create --role worker)"
            )
        principal = await self.keys.verify_async(token)
        if principal is None:
            raise Unauthenticated("the API key is not valid: mistyped, or revoked")
        if principal.role not in REPORTERS:
            raise Forbidden(
                f"a key of role {principal.role} cannot report work: use a key of role worker"
            )
        return principal


def scoped(principal: Principal, command: c.Command) -> c.Command:
    """``command`` as this principal may send it."""
    tenant, queues = _scope(principal)
    if tenant is None and queues is None:
        return command
    return c.Within.of(command, tenant, queues)


def check_serves(principal: Principal, execution_id: UUID, tenant: str, queue: str) -> None:
    """Refuse, as ``Within`` would, an execution this principal does not report for."""
    c.check_within(execution_id, tenant, queue, *_scope(principal))


def _scope(principal: Principal) -> tuple[str | None, tuple[str, ...] | None]:
    """The tenant (None: every tenant) and the queues (None: every queue) it reports for."""
    return (None if principal.of_deployment else principal.tenant), principal.queues
