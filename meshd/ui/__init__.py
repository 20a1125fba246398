"""The web UI's static files (served by meshd.api.ui)."""
