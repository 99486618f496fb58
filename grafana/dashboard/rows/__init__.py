"""One module per group of dashboard rows, each adding its panels to a Layout in order."""
