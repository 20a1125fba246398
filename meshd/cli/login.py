"""``meshd login`` and ``meshd logout`` (like ``consul login``/``logout``):
trade a bearer token (a JWT, a Kubernetes service-account token) for an ACL
token through an auth method, and destroy such a token again.

POST /v1/acl/login with ``{"AuthMethod", "BearerToken", "Meta"}`` answers
the new token; its SecretID is written to ``-token-sink-file`` (mode 0600).
POST /v1/acl/logout destroys the token sent as X-Consul-Token (``-token``,
``-token-file`` or the environment).
https://developer.hashicorp.com/consul/commands/login
https://developer.hashicorp.com/consul/api-docs/acl#login-to-auth-method
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, option


def _meta(pairs: tuple[str, ...]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"Error: -meta must be key=value, got {pair!r}")
        meta[key] = value
    return meta


def _bearer_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"Error reading bearer token file: {path}: {reason}") from None
    if not token:
        raise CLIError(f"No bearer token found in {path}")
    return token


def _write_sink(path: str, secret: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as sink:
            sink.write(secret)
    except OSError as exc:
        raise CLIError(f"Error writing token to file sink: {path}: {exc.strerror}") from None


@click.command()
@option("method", "method", default="", help="The auth method to log in with.")
@option(
    "bearer-token-file",
    "bearer_token_file",
    default="",
    metavar="PATH",
    help="The bearer token (JWT) to present.",
)
@option(
    "token-sink-file",
    "token_sink_file",
    default="",
    metavar="PATH",
    help="Where to write the ACL token's SecretID.",
)
@option("meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata set on the new token.")
@agent_options()
def login(
    client: AgentClient,
    method: str,
    bearer_token_file: str,
    token_sink_file: str,
    meta: tuple[str, ...],
) -> None:
    """Log in through an auth method and store the ACL token it issues."""
    if not method:
        raise CLIError("Missing required '-method' flag")
    if not bearer_token_file:
        raise CLIError("Missing required '-bearer-token-file' flag")
    if not token_sink_file:
        raise CLIError("Missing required '-token-sink-file' flag")
    body = {"AuthMethod": method, "BearerToken": _bearer_token(bearer_token_file)}
    if meta:
        body["Meta"] = _meta(meta)  # type: ignore[assignment]
    client.token = ""  # the bearer token is the credential here, as in Consul
    try:
        token = client.request("POST", "/v1/acl/login", json_body=body).json()
    except UnexpectedResponse as exc:
        raise CLIError(f"Error logging in: {exc.message}") from None
    secret = token.get("SecretID") if isinstance(token, dict) else None
    if not isinstance(secret, str) or not secret:
        raise CLIError("Error logging in: the agent answered no SecretID")
    _write_sink(token_sink_file, secret)


@click.command()
@agent_options()
def logout(client: AgentClient) -> None:
    """Destroy the ACL token given with -token/-token-file (one from `login`)."""
    if not client.token:
        raise CLIError("Error destroying token: no token given (-token or -token-file)")
    try:
        client.request("POST", "/v1/acl/logout")
    except UnexpectedResponse as exc:
        raise CLIError(f"Error destroying token: {exc.message}") from None
