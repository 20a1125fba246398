"""registry: the replicated state every meshd server holds.

* ``commands``: typed, versioned commands (msgpack) with ``validate()``.
* ``fsm``: ``RegistryFSM`` (apply/snapshot/restore), the state machine raft/ drives.
* ``state``: the state store, one module per table area, plus watches.
* ``queries``: the read API (``(index, result)``), ``shapes``: Consul JSON.
* ``blocking``: Consul blocking queries on trio.

Imports nothing of meshd, raft or connect.
"""
