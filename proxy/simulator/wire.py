"""The fixed vocabulary of Azure's wire format, shared by streamed chunks, whole bodies and errors."""

from __future__ import annotations

import json
import random
import string
from typing import Any, Final

from proxy.vocabulary import COMPLETION_CATEGORIES, PROMPT_CATEGORIES, SEVERITY_CATEGORIES

__all__ = ["CATEGORIES", "MESSAGE_CATEGORIES", "PROMPT_CATEGORIES", "SEVERITY_CATEGORIES"]

MESSAGE_CATEGORIES: Final = COMPLETION_CATEGORIES
CATEGORIES: Final = frozenset(PROMPT_CATEGORIES + COMPLETION_CATEGORIES + ("profanity",))
"""What a request may ask the simulator to flag (`x-simulator: category=...`)."""

# Deterministic output: the same request always yields the same text. The list has a
# non-ASCII word and an escaped quote so that byte-level handling gets exercised.
WORDS: Final = (
    "Hello", " from", " the", " simulated", " Azure", " OpenAI", " upstream", ",", " a",
    " naïve", " but", ' "faithful"', " stream", " of", " tokens", ".",
)  # fmt: skip
CHOICE_WORD_SHIFT: Final = 5  # choices of one completion start at different words

ALNUM: Final = string.ascii_letters + string.digits


def compact(value: Any) -> str:
    """Azure's JSON: no spaces, non-ASCII text as UTF-8 rather than escapes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def words(count: int) -> str:
    """The first ``count`` words of choice 0's text, which repeats ``WORDS``."""
    return "".join(WORDS[i % len(WORDS)] for i in range(count))


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(ALNUM, k=length))


def call_id() -> str:
    """A tool call's id, shaped like Azure's."""
    return random_id("call_", 24)


def filter_results(categories: tuple[str, ...], flagged: str | None) -> dict[str, Any]:
    """Content-filter verdicts, keys sorted as Azure sends them; ``flagged`` is filtered."""
    names = sorted(set(categories) | ({flagged} if flagged else set()))
    results: dict[str, Any] = {}
    for name in names:
        hit = name == flagged
        if name in SEVERITY_CATEGORIES:
            results[name] = {"filtered": hit, "severity": "medium" if hit else "safe"}
        else:
            results[name] = {"filtered": hit, "detected": hit}
    return results


def prompt_filter_results() -> list[dict[str, Any]]:
    """The verdict on the prompt that every answer carries: nothing filtered."""
    return [{"prompt_index": 0, "content_filter_results": filter_results(PROMPT_CATEGORIES, None)}]
