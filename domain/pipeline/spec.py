"""What a pipeline is asked to do: ``PipelineSpec`` (DESIGN §12), every field and default
declared once, checked whole on creation.

``PipelineSpec.parse`` turns any mistake into ``InvalidPipeline`` naming the field as the
caller wrote it (``columns[1].prompt: ...``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.pipeline import rules
from domain.pipeline.errors import InvalidPipeline

NAME = r"^[A-Za-z0-9_-]{1,64}$"
DEFAULT_PROMPT = 'Process item {{ item.id }} in column "{{ column }}".'
DEFAULT_SUMMARY_PROMPT = "Summarise {{ items | length }} items after iteration {{ iteration }}."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _template(value: str) -> str:
    problem = rules.template_problem(value)
    if problem is not None:
        raise ValueError(f"not a template: {problem}")
    return value


def _schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        problem = rules.schema_problem(value)
        if problem is not None:
            raise ValueError(f"not a JSON Schema: {problem}")
    return value


class TaskPolicy(_Strict):
    """How each step of a column runs: retries after the first attempt, its timeouts, and
    whether the pipeline goes on when the step fails for good."""

    retries: int = Field(default=1, ge=0, le=99)
    timeout_seconds: float | None = Field(default=None, gt=0)
    heartbeat_timeout_seconds: float | None = Field(default=None, gt=0)
    continue_on_fail: bool = True


class ColumnSpec(_Strict):
    name: str = Field(pattern=NAME)
    agent_id: str | None = Field(default=None, min_length=1, max_length=128)
    worker_queue: str = Field(pattern=NAME)
    prompt: str = DEFAULT_PROMPT
    parameters: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    task: TaskPolicy = Field(default_factory=TaskPolicy)

    _prompt = field_validator("prompt")(_template)
    _output_schema = field_validator("output_schema")(_schema)


class OnComplete(_Strict):
    """One execution after the loop; its result is the pipeline's ``summary``."""

    agent_id: str = Field(min_length=1, max_length=128)
    worker_queue: str = Field(pattern=NAME)
    prompt: str = DEFAULT_SUMMARY_PROMPT
    parameters: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None

    _prompt = field_validator("prompt")(_template)
    _output_schema = field_validator("output_schema")(_schema)


class PipelineSpec(_Strict):
    name: str = Field(pattern=NAME)
    columns: list[ColumnSpec] = Field(min_length=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    agents: dict[str, str] = Field(default_factory=dict)
    items: list[dict[str, Any]] = Field(default_factory=list)
    flow: Literal["barrier", "stream"] = "barrier"
    until: str | None = None
    max_iterations: int = Field(default=5, ge=1, le=1000)
    on_max_iterations: Literal["return_last", "fail"] = "return_last"
    on_complete: OnComplete | None = None
    skip_if: bool = False

    @field_validator("until")
    @classmethod
    def _until_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            problem = rules.expression_problem(value)
            if problem is not None:
                raise ValueError(f"not a JMESPath expression: {problem}")
        return value

    @field_validator("items")
    @classmethod
    def _items_have_ids(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_items(items, [])
        return items

    @model_validator(mode="after")
    def _columns_fit(self) -> PipelineSpec:
        names = [column.name for column in self.columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"columns: names must be unique ({', '.join(repeated)} repeated)")
        unknown = sorted(set(self.agents) - set(names))
        if unknown:
            raise ValueError(f"agents: no column named {', '.join(unknown)}")
        for index, column in enumerate(self.columns):
            if not self.agent_of(column.name):
                raise ValueError(f"columns[{index}].agent_id: required (or agents.{column.name})")
        return self

    @classmethod
    def parse(cls, data: Any) -> PipelineSpec:
        """The spec of ``data`` (as the caller sent it), or ``InvalidPipeline`` naming
        every field that is wrong."""
        if not isinstance(data, dict):
            raise InvalidPipeline("a pipeline spec is an object")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InvalidPipeline(_explain(error)) from None

    def column(self, name: str) -> ColumnSpec:
        return next(column for column in self.columns if column.name == name)

    def agent_of(self, column: str) -> str:
        return self.agents.get(column) or self.column(column).agent_id or ""

    def concurrency_of(self, column: str) -> int | None:
        return self.column(column).max_concurrency or self.max_concurrency


def item_id(item: dict[str, Any]) -> str:
    return str(item["id"])


def check_items(items: list[Any], known: list[str]) -> None:
    """Each item an object with an ``id`` (a string or a number) not among ``known`` nor
    repeated; raises ``ValueError`` naming the first that is not."""
    seen = set(known)
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
            raise ValueError(f"items[{index}]: an object with an id (a string or a number)")
        if not 0 < len(str(item["id"])) <= 200:
            raise ValueError(f"items[{index}].id: 1-200 characters")
        if item_id(item) in seen:
            raise ValueError(f"items[{index}].id: {item_id(item)!r} is not unique")
        seen.add(item_id(item))


def _explain(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"]
        ).lstrip(".")
        message = str(detail["msg"]).removeprefix("Value error, ")
        said = not where or message.startswith(f"{where}[")
        problems.append(message if said else f"{where}: {message}")
    return "; ".join(problems)
