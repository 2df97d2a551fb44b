"""The chat template: how /v1/chat/completions turns messages into one prompt.

glassgpt models are base models: trained to continue text, never taught to follow
instructions or take turns. A chat is therefore rendered as a plain transcript the model
continues, one line per message, ending where the assistant speaks next:

    System: You are terse.
    User: Hello
    Assistant: Hi.
    User: How are you?
    Assistant:

(the model continues after "Assistant:"). The answer stops where the model starts the
next user line ("\\nUser:" is always a stop string) or at end-of-text. A model trained on
chat transcripts in this form answers better; any base model still "plays" the transcript.
"""
from __future__ import annotations

from ..errors import GlassError

ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
STOPS = ("\nUser:",)
PROMPT_END = "Assistant:"


def message_text(content) -> str:
    """A message's text: a string, or OpenAI's list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise GlassError("only text message parts are supported: {\"type\": \"text\", \"text\": ...}")
        texts.append(part["text"])
    return "".join(texts)


def render_chat(messages: list[tuple[str, str]]) -> str:
    """[(role, text), ...] -> the transcript prompt, ending with 'Assistant:'."""
    lines = [f"{ROLE_NAMES[role]}: {text.strip()}" for role, text in messages]
    return "\n".join(lines + [PROMPT_END])
