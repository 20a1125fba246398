"""Options every agent-talking command shares, as one decorator.

``@agent_options()`` adds ``--http-addr``, ``--token`` and the TLS file
options and hands the command a ready ``client: AgentClient`` instead of
them; ``@agent_options(output=True)`` also adds ``--format [table|json]``
(passed as ``fmt``). Each option is spelt both Consul's way (``-http-addr``)
and the usual way (``--http-addr``). Precedence is flag, then the
``MESHD_*`` variable, then the ``CONSUL_*`` one, so an environment set up
for Consul's CLI works unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .client import AgentClient, TLSFiles, parse_address
from .errors import CLIError

__all__ = ["agent_options", "flag", "format_option", "option"]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json")


def _env(name: str) -> list[str]:
    return [f"MESHD_{name}", f"CONSUL_{name}"]


def option(name: str, *more: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` declared as both ``-name`` (Consul) and ``--name``."""
    return click.option(f"-{name}", f"--{name}", *more, **kwargs)


def flag(name: str, help: str, *, dest: str = "") -> Callable[[F], F]:
    """A boolean ``-name``/``--name`` flag (``dest``: the parameter name)."""
    extra = (dest,) if dest else ()
    return option(name, *extra, is_flag=True, default=False, help=help)


_CONNECTION_OPTIONS = [
    option(
        "http-addr",
        "http_addr",
        envvar=_env("HTTP_ADDR"),
        show_envvar=True,
        default="",
        metavar="ADDR",
        help="The agent's HTTP API: host:port, http(s)://host:port or unix:///path "
        "[default: 127.0.0.1:8500].",
    ),
    option(
        "token",
        "token",
        envvar=_env("HTTP_TOKEN"),
        show_envvar=True,
        default="",
        metavar="TOKEN",
        help="ACL token sent as X-Consul-Token.",
    ),
    option(
        "token-file",
        "token_file",
        envvar=_env("HTTP_TOKEN_FILE"),
        show_envvar=True,
        default="",
        metavar="PATH",
        help="File holding the ACL token (used unless -token is given on the command line).",
    ),
    option(
        "ca-file",
        "ca_file",
        envvar=_env("CACERT"),
        default="",
        metavar="PATH",
        help="CA certificate to verify an https agent.",
    ),
    option(
        "client-cert",
        "client_cert",
        envvar=_env("CLIENT_CERT"),
        default="",
        metavar="PATH",
        help="Client certificate for an https agent that verifies clients.",
    ),
    option(
        "client-key",
        "client_key",
        envvar=_env("CLIENT_KEY"),
        default="",
        metavar="PATH",
        help="Key of --client-cert.",
    ),
    option(
        "tls-server-name",
        "tls_server_name",
        envvar=_env("TLS_SERVER_NAME"),
        default="",
        metavar="NAME",
        help="Name to verify the agent's certificate against (default: the host).",
    ),
]

format_option = option(
    "format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output human-readable tables or JSON.",
)


def read_token_file(path: str) -> str:
    """The token stored in ``path`` (whitespace stripped); ``CLIError`` naming
    the file when it cannot be read or is empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"Error loading token file {path}: {reason}") from None
    if not token:
        raise CLIError(f"Error loading token file {path}: the file is empty")
    return token


def _token(token: str, token_file: str) -> str:
    ctx = click.get_current_context(silent=True)
    from_flag = (
        ctx is not None
        and ctx.get_parameter_source("token") == click.core.ParameterSource.COMMANDLINE
    )
    if token_file and not from_flag:
        return read_token_file(token_file)
    return token.strip()


def agent_options(*, output: bool = False) -> Callable[[F], F]:
    """Add the shared options; the command receives ``client`` (and ``fmt``).

    Raises ``CLIError`` at invocation when the address is malformed.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            http_addr: str,
            token: str,
            token_file: str,
            ca_file: str,
            client_cert: str,
            client_key: str,
            tls_server_name: str,
            **kwargs: Any,
        ) -> Any:
            tls = TLSFiles(ca_file, client_cert, client_key, tls_server_name)
            client = AgentClient(parse_address(http_addr), _token(token, token_file), tls=tls)
            return func(*args, client=client, **kwargs)

        decorated: Callable[..., Any] = wrapper
        if output:
            decorated = format_option(decorated)
        for add in reversed(_CONNECTION_OPTIONS):
            decorated = add(decorated)
        return decorated  # type: ignore[return-value]

    return decorate
