"""The Consul-compatible HTTP API: one module per area, one route table
(``routes.py``); handlers talk to the agent only through ``meshd.agent``."""
