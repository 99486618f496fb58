"""One-command benchmark of the proxy against the simulator, a bare aiohttp hop and nginx.

`python3 -m bench` (see bench/README.md). Layout: `procs` starts, pins, measures and stops
child processes; `targets` knows how to run each target; `timed_client` sends the requests and
timestamps every SSE event; `scenarios` holds S1-S4; `report` turns results into Markdown and
JSON with the PASS/GAP verdicts; `profile` samples the proxy's hot path with py-spy.
"""
