"""Fixtures for the Kubernetes manifests: `kubectl`, `promtool` and every rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.k8s import DEPLOY, Obj, kustomizations, render, require_binary


@pytest.fixture(scope="session")
def kubectl() -> str:
    return require_binary("kubectl", "Debian: apt-get install kubectl")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", "Debian: apt-get install prometheus")


@pytest.fixture(scope="session")
def renderings(kubectl: str) -> dict[Path, list[Obj]]:
    """`kubectl kustomize` of every kustomization under deploy/kubernetes, by directory."""
    return {directory: render(kubectl, directory) for directory in kustomizations()}


@pytest.fixture(scope="session")
def default_objects(renderings: dict[Path, list[Obj]]) -> list[Obj]:
    """What `kubectl apply -k deploy/kubernetes` creates."""
    return renderings[DEPLOY]
