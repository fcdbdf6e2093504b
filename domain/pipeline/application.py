"""The command side of pipelines: start, add items, cancel, and the conductor's ``advance``.

Pipelines keep their own log (the table ``agentboard_pipeline_events``, beside the
executions' ``agentboard_events``): the relay, the execution views and the audit chain
read the executions' log and know nothing of pipelines (docs/decisions.md, "Pipelines").
Both the API and the conductor write to a pipeline; a version conflict between them is
retried on a fresh copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment

from domain.pipeline.aggregate import Pipeline
from domain.pipeline.conduct import Steps, conduct
from domain.pipeline.errors import PipelineNotFound
from domain.pipeline.spec import PipelineSpec
from domain.pipeline.values import idempotent_pipeline_id

CONFLICT_RETRIES = 20


class PipelineService(Application[UUID]):
    name = "agentboard_pipeline"

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Configuration comes only from the composition root, never from os.environ."""
        return Environment(name, dict(env or {}))

    def start(
        self,
        tenant: str,
        data: Any,
        created_by: dict[str, str],
        idempotency_key: str | None = None,
    ) -> Pipeline:
        """Start the pipeline ``data`` describes (``InvalidPipeline`` names what is wrong);
        with an idempotency key, a repeat returns the pipeline the first one started."""
        spec = PipelineSpec.parse(data)
        if idempotency_key is None:
            pipeline_id = uuid4()
        else:
            pipeline_id = idempotent_pipeline_id(tenant, idempotency_key)
            existing = self._find(pipeline_id)
            if existing is not None:
                return existing
        pipeline = Pipeline.start(
            pipeline_id,
            tenant=tenant,
            spec=spec,
            created_by=created_by,
            idempotency_key=idempotency_key,
        )
        self.save(pipeline)
        return pipeline

    def add_items(
        self, pipeline_id: UUID, tenant: str | None, items: Any, actor: dict[str, str]
    ) -> Pipeline:
        items_list = items if isinstance(items, list) else [items]
        return self._change(pipeline_id, tenant, lambda p: p.add_items(items_list, actor))

    def cancel(
        self, pipeline_id: UUID, tenant: str | None, reason: str, actor: dict[str, str]
    ) -> Pipeline:
        return self._change(pipeline_id, tenant, lambda p: p.cancel(reason, actor))

    def advance(self, pipeline_id: UUID, steps: Steps) -> Pipeline:
        """Move the pipeline on as far as it goes now (the conductor's pass)."""
        return self._change(pipeline_id, None, lambda p: conduct(p, steps))

    def get(self, pipeline_id: UUID, tenant: str | None = None) -> Pipeline:
        pipeline = self._find(pipeline_id)
        if pipeline is None or (tenant is not None and pipeline.tenant != tenant):
            raise PipelineNotFound(pipeline_id)
        return pipeline

    def _change(
        self, pipeline_id: UUID, tenant: str | None, change: Callable[[Pipeline], None]
    ) -> Pipeline:
        for _ in range(CONFLICT_RETRIES):
            pipeline = self.get(pipeline_id, tenant)
            change(pipeline)
            try:
                self.save(pipeline)
            except IntegrityError:
                continue  # the API and the conductor both wrote: again, on a fresh copy
            return pipeline
        raise IntegrityError(f"pipeline {pipeline_id} kept changing under us")

    def _find(self, pipeline_id: UUID) -> Pipeline | None:
        try:
            pipeline: Pipeline = self.repository.get(pipeline_id)
        except AggregateNotFoundError:
            return None
        return pipeline
