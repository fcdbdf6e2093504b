"""The recording context of the SDK (agentboard_client/testing.py), as the agents' unit
tests have always imported it."""

from agentboard_client.testing import (
    Artifact,
    NoAnswerScripted,
    Question,
    RecordedToolCall,
    RecordingContext,
)

__all__ = ["Artifact", "NoAnswerScripted", "Question", "RecordedToolCall", "RecordingContext"]
