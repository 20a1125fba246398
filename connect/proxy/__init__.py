"""``meshd proxy``: the per-host L4 mTLS proxy serving every local sidecar.

Pure parts (config.py, balancer.py, authz.py, identity.py) are sans-I/O;
the trio drivers are agent_client.py, watchers.py, credentials.py,
inbound.py, outbound.py, pump.py (the data path), sockets.py, metrics.py,
proxy.py (composition) and supervisor.py (``--workers N``).
"""

from .proxy import Proxy, ProxyOptions, wait_for_agent

__all__ = ["Proxy", "ProxyOptions", "wait_for_agent"]
