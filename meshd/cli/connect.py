"""``meshd connect ca ...`` and ``meshd connect proxy`` (Consul's spelling):
the same commands as ``meshd ca`` and ``meshd proxy``.
https://developer.hashicorp.com/consul/commands/connect
"""

from __future__ import annotations

import click

from .ca import ca
from .proxy import proxy


@click.group()
def connect() -> None:
    """Connect (service mesh) commands, as Consul spells them."""


connect.add_command(ca, "ca")
connect.add_command(proxy, "proxy")
