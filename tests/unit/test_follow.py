"""`--follow` over a stream that breaks: it resumes after the last event shown, once each."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import typer

from api.cli.client import ApiClient
from api.cli.follow import follow
from api.http.live import Message
from infra.settings import Settings

CONNECTED = b": connected\nretry: 1000\n\n"


def output(position: int, text: str) -> bytes:
    return Message.of("OutputAppended", position, {"data": {"text": text}}).frame


def server(*streams: list[bytes]) -> tuple[ApiClient, list[str | None]]:
    """A client whose server answers each connection with the next of ``streams``; the
    ``Last-Event-ID`` of each connection."""
    resumed_after: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        resumed_after.append(request.headers.get("last-event-id"))
        frames: Iterator[bytes] = iter(streams[len(resumed_after) - 1])
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frames)

    api = ApiClient(Settings(), "http://agentboard.test", "a-key")
    api.http = httpx.Client(base_url=api.url, transport=httpx.MockTransport(answer))
    return api, resumed_after


def test_a_stream_that_breaks_resumes_after_the_last_event_and_shows_each_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, resumed_after = server(
        [CONNECTED, output(1, "one "), b": keepalive\n\n", output(2, "two ")],  # then it breaks
        [CONNECTED, output(3, "three"), Message.of("end", 3, {"status": "completed"}).frame],
    )

    status = follow(api, "an-execution", answer_questions=False)

    assert status == "completed"
    assert resumed_after == [None, "2"]
    captured = capsys.readouterr()
    assert captured.out == "one two three"
    assert "reconnecting (the server closed the stream)" in captured.err


def test_a_server_that_refuses_the_follow_is_one_line_not_a_reconnect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no execution an-execution"})

    api = ApiClient(Settings(), "http://agentboard.test", "a-key")
    api.http = httpx.Client(base_url=api.url, transport=httpx.MockTransport(refuse))

    with pytest.raises(typer.Exit) as exited:
        follow(api, "an-execution", answer_questions=False)

    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == "agentboard: no execution an-execution (HTTP 404)\n"
