"""The simulator's configuration: what a request gets when it does not ask for more."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.vocabulary import DEFAULT_DEPLOYMENTS


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated resource behaves when a request does not say otherwise."""

    deployments: tuple[str, ...] = DEFAULT_DEPLOYMENTS
    """Deployment names that exist; others get 404 DeploymentNotFound. Empty = accept any."""
    api_keys: tuple[str, ...] = ()
    """Accepted as ``api-key`` or as a Bearer token. Empty (with no bearer_tokens) = no auth."""
    bearer_tokens: tuple[str, ...] = ()
    """Entra tokens accepted as ``Authorization: Bearer``."""
    tokens: int = 20
    """Content chunks per choice of a completion."""
    first_token_delay: float = 0.0
    """Seconds between the prompt-annotation chunk and the first content chunk."""
    token_delay: float = 0.0
    """Seconds between content chunks."""
    model: str = "gpt-4o-mini-2024-07-18"
    """The underlying model version reported in ``model`` (not the deployment name)."""
    rpm: int | None = None
    """Requests per sliding minute before answering 429 (None: no quota enforced)."""
    tpm: int | None = None
    """Tokens (prompt + completion) per sliding minute before answering 429."""
