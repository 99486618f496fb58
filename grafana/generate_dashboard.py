"""Write grafana/dashboards/aoai-stream-proxy.json, the proxy's Grafana dashboard.

The JSON is generated (by the `dashboard` package next to this script) so that every panel gets
the same datasource, the same label filters and a unit without anyone having to remember; edit
the package, not the JSON, then run

    python grafana/generate_dashboard.py          # rewrite the JSON
    python grafana/generate_dashboard.py --check  # exit 1 if the JSON is stale (the tests run this)

Every query sits at panels[].targets[].expr (rows are expanded, so no panel is nested in a row):
tests and the end-to-end check can read them without knowing Grafana's layout rules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards" / "aoai-stream-proxy.json"

# The tests load this script from its path rather than running it, so the package next to it is
# not importable until its folder is on the path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from dashboard.build import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
