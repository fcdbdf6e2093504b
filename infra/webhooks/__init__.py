"""Webhooks (DESIGN §14): endpoints told, signed and in order per execution, when
executions enter the statuses they asked for. docs/webhooks.md says how; ``store`` keeps
endpoints, messages and attempts, ``outbox`` makes the messages from the log,
``delivery`` sends them, ``service`` runs both in the one active API process."""
