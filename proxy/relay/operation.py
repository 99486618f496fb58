"""Which API operation a request path addresses: a closed set, decided by the path alone.

The operation picks how the response is read (chat-completion or Responses semantics) and is
the `operation` label of `requests_total`. Paths (see docs/responses-wire.md for the Responses
ones): `/openai/deployments/{deployment}/{op}`, `/openai/v1/{op}` and, for the Responses API's
older preview surface, `/openai/responses`. Anything else is `other`, as are the Responses API's
sub-resources (`/responses/{id}`, `/responses/{id}/cancel`, ...): they return responses stored
earlier, whose tokens were counted when they were created.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Operation = Literal["chat_completions", "responses", "completions", "embeddings", "other"]
OPERATIONS: Final[tuple[Operation, ...]] = get_args(Operation)
CHAT_COMPLETIONS: Final = "chat_completions"
RESPONSES: Final = "responses"
OTHER_OPERATION: Final = "other"

# What follows the prefix: `/openai/deployments/{deployment}/` or `/openai/v1/`.
_BY_TAIL: Final[dict[str, Operation]] = {
    "chat/completions": "chat_completions",
    "extensions/chat/completions": "chat_completions",  # "on your data", same stream shape
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
}


def operation_of(path: str) -> Operation:
    """The operation `path` (without its query string) addresses."""
    if path == "/openai/responses":
        return "responses"
    if path.startswith("/openai/v1/"):
        tail = path[len("/openai/v1/"):]
    elif path.startswith("/openai/deployments/"):
        parts = path.split("/", 4)  # "", "openai", "deployments", name, tail
        if len(parts) < 5 or not parts[3]:
            return "other"
        tail = parts[4]
    else:
        return "other"
    return _BY_TAIL.get(tail, "other")
