"""The browser tests' guard: without chromium they fail under CI and skip elsewhere."""

from __future__ import annotations

import pytest

from tests.integration.browser.conftest import require_chromium


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium not found"):
        require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        require_chromium()
