"""``meshd proxy``: the per-host L4 mTLS proxy serving every local sidecar.

Pure parts (config.py, balancer.py, authz.py, identity.py, flags.py) are
sans-I/O; the trio drivers are agent_client.py, watchers.py, credentials.py,
inbound.py, outbound.py, pump.py (the data path), sockets.py, metrics.py,
proxy.py (composition: ``Proxy``, ``ProxyOptions``, ``wait_for_agent``) and
supervisor.py (``--workers N``); main.py is the process entry point.

This file imports nothing, so that the CLI can read ``flags.DEFAULTS``
without loading the proxy.
"""
