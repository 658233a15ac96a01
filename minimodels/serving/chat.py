"""A plain-text chat template: the conversation as "Role: content" lines, then the cue "Assistant:".

A base model has no chat markup of its own, so the template is ordinary text it can continue; the cue
of the next user turn ("\nUser:") ends the assistant's answer (a stop string the server adds).
"""

from __future__ import annotations

ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
CHAT_STOP = ("\nUser:",)


def message_text(content) -> str:
    """A message's content: a string, or OpenAI's list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ValueError("message content must be a string or a list of text parts {'type': 'text', 'text': ...}")


def apply_chat_template(messages: list[dict]) -> str:
    """[{"role": "user", "content": "Hi"}] -> "User: Hi\\nAssistant:"."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} objects")
    lines = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role={role!r}: must be one of {sorted(ROLES)}")
        lines.append(f"{ROLES[role]}: {message_text(message.get('content'))}")
    return "\n".join(lines) + "\nAssistant:"
