"""``agentboard stats usage``: tokens and cost the agents reported, grouped."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from api.cli.client import KeyOption, UrlOption
from api.cli.executions import Output, OutputOption, api_for
from api.cli.group import verb_group

stats_cli = verb_group("Figures the views sum up.")


class GroupBy(StrEnum):
    AGENT = "agent"
    MODEL = "model"
    TEAM = "team"
    QUEUE = "queue"


@stats_cli.command("usage")
def usage(
    group_by: Annotated[
        GroupBy, typer.Option("--group-by", "-g", help="agent, model, team or queue")
    ] = GroupBy.AGENT,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Show token usage and cost, grouped.

    Per group: the executions that reported usage, the input and output tokens and the cost
    they summed to, and p50/p95 of tokens and of cost per execution (a cost is shown where
    the agents reported one).

    \b
    Examples:
      agentboard stats usage --group-by model
      agentboard stats usage -o json | jq '.[] | {key, cost_usd}'
    """
    rows = api_for(url, api_key).call("GET", "/v1/stats/usage", params={"group_by": group_by})
    if output is Output.JSON:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no usage reported")
        return
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.table import Table  # noqa: PLC0415

    table = Table(group_by.value, "executions", "input", "output", "cost $", "p50 tokens",
                  "p95 tokens", "p50 $", "p95 $", box=None)  # fmt: skip
    for row in rows:
        table.add_row(
            str(row["key"] if row["key"] is not None else "-"), str(row["executions"]),
            f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", _money(row["cost_usd"]),
            f"{row['p50_tokens']:,.0f}", f"{row['p95_tokens']:,.0f}",
            _money(row["p50_cost_usd"]), _money(row["p95_cost_usd"]),
        )  # fmt: skip
    Console().print(table)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4f}"
