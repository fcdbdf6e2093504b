"""The pipeline's three small languages, compiled and run in one place: prompts (a
sandboxed Jinja2 template), the loop's ``until`` (a JMESPath expression) and the columns'
``output_schema`` (a JSON Schema).

These three libraries are the only ones outside eventsourcing and pydantic that ``domain/``
imports, and only here (docs/decisions.md, "Pipelines"): each is pure (no I/O, no clock,
no randomness), so a decision made with them replays the same from the same events.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jmespath
import jsonschema
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jmespath.exceptions import JMESPathError
from jsonschema.exceptions import SchemaError

_TEMPLATES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class RuleError(ValueError):
    """A template, expression or schema that does not compile, or a template that fails
    when rendered; the message says what is wrong."""


def template_problem(source: str) -> str | None:
    """Why ``source`` is not a template (None: it is one)."""
    try:
        _template(source)
    except TemplateError as error:
        return str(error.message or error)
    return None


def render(source: str, context: dict[str, Any]) -> str:
    """``source`` rendered over ``context``; a name it uses and ``context`` lacks, or a
    forbidden operation, raises ``RuleError``."""
    try:
        return str(_template(source).render(**context))
    except TemplateError as error:
        raise RuleError(str(error.message or error)) from None


def expression_problem(source: str) -> str | None:
    """Why ``source`` is not a JMESPath expression (None: it is one)."""
    try:
        _expression(source)
    except JMESPathError as error:
        return str(error)
    return None


def holds(source: str, data: dict[str, Any]) -> bool:
    """Whether the JMESPath expression ``source`` is truthy over ``data`` (JMESPath's own
    truth: false, null, empty strings, lists and objects are false)."""
    try:
        value = _expression(source).search(data)
    except JMESPathError as error:
        raise RuleError(str(error)) from None
    return value not in (None, False, "", [], {})


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (None: it is one)."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as error:
        return error.message
    return None


def output_problem(schema: dict[str, Any], output: Any) -> str | None:
    """Why ``output`` does not satisfy ``schema`` (None: it does)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(output))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where or 'the output'}: {error.message}"


@lru_cache(maxsize=512)
def _template(source: str) -> Any:
    return _TEMPLATES.from_string(source)


@lru_cache(maxsize=512)
def _expression(source: str) -> Any:
    return jmespath.compile(source)
