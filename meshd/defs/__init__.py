"""Service and check definitions and the rules of registration input.

Value types and their parsers (``ServiceDefinition``, ``CheckDefinition``,
``parse_service``/``parse_check``, the field rules and JSON bounds of
catalog, agent and txn bodies) and the expansion of a definition into its
registrations (``registration``, ``sidecar``: Connect.SidecarService),
shared by the API handlers, the agent's local state, the health checks and
the CLI, so they live below all of them and import nothing of meshd.agent
or meshd.api.
"""
