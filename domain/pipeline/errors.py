"""Named refusals of the Pipeline context."""

from __future__ import annotations

from uuid import UUID

from domain.execution.errors import DomainError


class PipelineError(DomainError):
    """A command the pipeline refuses; the message says why, in the caller's terms."""


class InvalidPipeline(PipelineError):
    """A spec (or items) that cannot run: the message names the field."""


class PipelineNotFound(PipelineError):
    def __init__(self, pipeline_id: UUID) -> None:
        super().__init__(f"pipeline {pipeline_id} not found")
        self.pipeline_id = pipeline_id


class PipelineEnded(PipelineError):
    """A change asked of a pipeline that has already completed, failed or been cancelled."""

    def __init__(self, pipeline_id: UUID, status: str) -> None:
        super().__init__(f"pipeline {pipeline_id} is {status}")
        self.pipeline_id = pipeline_id
        self.status = status


class StepNotDispatched(PipelineError):
    """An end recorded for a step the pipeline never dispatched."""
