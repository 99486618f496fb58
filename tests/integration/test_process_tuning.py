"""Serving-process settings, checked in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from proxy.runtime.process_tuning import GEN0_THRESHOLD, tune_for_serving
tune_for_serving()
print(json.dumps({"gen0": gc.get_threshold()[0], "frozen": gc.get_freeze_count(),
                  "expected_gen0": GEN0_THRESHOLD}))
"""


def test_tuning_freezes_start_up_objects_and_raises_the_gen0_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen["gen0"] == seen["expected_gen0"] == 10_000
    assert seen["frozen"] > 1000, "start-up objects should be frozen"
    assert out.stderr == ""
