"""Agent metrics, by concern:

- ``recorder``: the ``Recorder`` interface (records nothing; ``NO_METRICS``),
  a leaf that the RPC layer, DNS, anti-entropy and checks import;
- ``prometheus``: ``Metrics``, the prometheus-client implementation, and the
  metric catalogue;
- ``summary``: Consul's JSON document computed from it;
- ``live``: values read at scrape time (the agent's readers live next to the
  agent, in ``meshd.agent.live_metrics``).

``Recorder``, ``NO_METRICS`` and ``Metrics`` are re-exported for callers of
``from meshd.metrics import ...``; new code imports from the modules.
"""

from __future__ import annotations

from .prometheus import Metrics
from .recorder import NO_METRICS, Recorder

__all__ = ["NO_METRICS", "Metrics", "Recorder"]
