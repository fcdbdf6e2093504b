"""Typed answers: a question may carry the JSON Schema (draft 2020-12) its answer must
satisfy, and an answer that does not is refused with what is wrong, in the caller's terms.

jsonschema is imported on first use: most processes never check an answer.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.execution.errors import InvalidAnswer, InvalidCommand


def check_answer_schema(schema: dict[str, Any] | None) -> None:
    """Refuse a question whose schema is not a JSON Schema."""
    if schema is None:
        return
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - see the module docstring
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415

    if not isinstance(schema, dict):
        raise InvalidCommand("the answer schema must be a JSON object (a JSON Schema)")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        problem = f"the answer schema is not a valid JSON Schema: {error.message}"
        raise InvalidCommand(problem) from None


def check_answer(execution_id: UUID, answer: Any, schema: dict[str, Any] | None) -> None:
    """Refuse ``answer`` when it does not satisfy ``schema``, naming where and why."""
    if schema is None:
        return
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - see the module docstring
    from jsonschema.exceptions import best_match  # noqa: PLC0415

    error = best_match(Draft202012Validator(schema).iter_errors(answer))
    if error is None:
        return
    where = "answer" + error.json_path.removeprefix("$")
    raise InvalidAnswer(execution_id, f"{where}: {error.message}")
