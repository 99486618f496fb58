"""The words the proxy, the simulator and the load generators share, defined once.

Content-filter categories are Azure's (docs/chat-wire.md §6.1); the rest are the proxy's own
label values and defaults. This module imports nothing from the project, so any part of it
(the serving process, the simulator, the tools) can use it without loading the others.
"""

from __future__ import annotations

from typing import Final

# --- Content-filter categories (docs/chat-wire.md §6.1) -------------------------------------

SEVERITY_CATEGORIES: Final = ("hate", "self_harm", "sexual", "violence")
"""Graded `safe` / `low` / `medium` / `high`; present on prompts and on completions."""
PROMPT_CATEGORIES: Final = ("hate", "jailbreak", "self_harm", "sexual", "violence")
"""What Azure's default filter reports for a prompt (the severity ones plus prompt shields)."""
COMPLETION_CATEGORIES: Final = (
    "hate", "protected_material_code", "protected_material_text", "self_harm", "sexual",
    "violence",
)  # fmt: skip
"""What Azure's default filter reports for each choice of a completion."""
OPTIONAL_CATEGORIES: Final = ("custom_blocklists", "indirect_attack", "profanity")
"""Reported only when a deployment's filter configuration turns them on."""
FILTER_CATEGORIES: Final = frozenset(
    PROMPT_CATEGORIES + COMPLETION_CATEGORIES + OPTIONAL_CATEGORIES)
"""Every category the proxy reports by name; any other flagged name is reported as OTHER."""

# --- Bounded label values -------------------------------------------------------------------

OTHER: Final = "other"
"""Any value outside a closed set: a filter category, a finish reason, a status code."""
OTHER_DEPLOYMENT: Final = OTHER
"""The deployment label of a request naming no configured deployment."""
UNKNOWN_CLIENT: Final = "unknown"
"""The client label of a caller whose key is not a configured client's."""

# --- Failures talking to the upstream (the `error_type` label) ------------------------------

ERROR_CONNECT: Final = "connect"
ERROR_TIMEOUT: Final = "timeout"
ERROR_RESET: Final = "reset"
ERROR_PROTOCOL: Final = "protocol"
ERROR_TYPES: Final = (ERROR_CONNECT, ERROR_TIMEOUT, ERROR_RESET, ERROR_PROTOCOL)

# --- Finish reasons (docs/chat-wire.md §5) --------------------------------------------------

INCOMPLETE: Final = "incomplete"
"""The finish reason the proxy counts for a choice a 200 stream left unfinished."""


def incomplete_finishes(unfinished_choices: int, finished_choices: int) -> int:
    """How many `incomplete` finish reasons one 200 stream counts.

    One per choice that produced a delta but no finish reason; and a stream that finished no
    choice at all (cut before any delta, e.g. right after the prompt annotations) counts one,
    so that every stream that ended without a reason shows on the dashboard.
    """
    return unfinished_choices if finished_choices else max(unfinished_choices, 1)


# --- Defaults for the demo, the simulator and the load generators ---------------------------

DEFAULT_API_VERSION: Final = "2024-10-21"
"""The GA api-version the examples, the simulator's clients and the load generators send."""
DEFAULT_DEPLOYMENTS: Final = ("gpt-4o", "gpt-4o-mini")
"""The deployments the demo configures and the simulator serves unless told otherwise."""
