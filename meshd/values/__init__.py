"""Value types and pure bookkeeping the API handlers and the agent share.

User events and their ring (``events``), the outlier ejections local
proxies report (``ejections``), the request samples kept for config-entry
dry runs (``request_samples``), the windows of the proxies' per-edge
figures (``mesh_window``) and a canary's decisions, events and clock
(``canary_core``, ``canary_events``). No network or disk I/O and nothing of
meshd.agent or meshd.api, so both can import them (an import-linter
contract says so).
"""
