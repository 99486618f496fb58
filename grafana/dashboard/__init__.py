"""The proxy's Grafana dashboard as data; grafana/generate_dashboard.py writes it out."""
