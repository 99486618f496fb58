"""The proxy's built-in page: stream vs no stream, on the user's deployments or the simulator.

`routes` serves the files in `static/` (plain HTML, CSS and JavaScript modules, no build step)
at `/` and under `/_proxy/ui/`, on the proxy's own port.
"""
