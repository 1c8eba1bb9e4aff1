"""The node agent: one daemon per server that runs what the leader assigns.

See ``nodeagent/README.md`` for the flow. Entry point: :func:`nodeagent.daemon.run`.
"""
