"""``meshd canary start|status|pause|resume|abort``: canary releases that
finish themselves (issue 19), through ``/v1/internal/canary``.

``start SERVICE --to SUBSET`` shifts the service-splitter's weight to SUBSET
step by step (``--steps``, each held ``--interval``) while the subset's
error rate and p99, measured by the mesh, stay within ``--max-error-rate``
and ``--max-p99``; the servers' leader steps it and rolls it back by itself.
Flag values are checked before anything is sent: a bad one is a one-line
error naming the flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from ..durations import parse_duration
from ..errors import DurationError
from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options
from .output import echo_json, echo_pairs, echo_table

PATH = "/v1/internal/canary"


def parse_steps(text: str) -> list[float]:
    """``5,10,25,50,100`` -> numbers; CLIError naming ``--steps`` otherwise."""
    try:
        steps = [float(part) for part in text.split(",")]
    except ValueError:
        raise CLIError(
            f"Error: invalid --steps {text!r}: expected percentages like 5,25,100"
        ) from None
    return [int(s) if s.is_integer() else s for s in steps]


def parse_rate(text: str) -> float:
    """``1%`` or ``0.01`` -> 0.01; CLIError naming ``--max-error-rate`` otherwise."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise CLIError(f"Error: invalid --max-error-rate {text!r}: expected like 1% or 0.01")
    return value


def check_duration(flag: str, text: str) -> str:
    """``text`` if it is a Go duration; CLIError naming ``flag`` otherwise."""
    try:
        parse_duration(text)
    except DurationError as exc:
        raise CLIError(f"Error: invalid {flag} {text!r}: {exc}") from None
    return text


def _pct(value: Any) -> str:
    return f"{value:g}%" if isinstance(value, int | float) else str(value)


def detail_rows(c: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """One canary as label/value rows (``status SERVICE``)."""
    steps = c.get("Steps") or []
    last = c.get("Last") or {}
    rows: list[tuple[str, Any]] = [
        ("Service:", c.get("Service")),
        ("State:", c.get("State")),
        ("Subsets:", f"{c.get('From')} -> {c.get('To')}"),
        (
            "Weight:",
            f"{_pct(c.get('Weight'))} (step {int(c.get('Step', 0)) + 1} of {len(steps)}: "
            f"{','.join(_pct(s) for s in steps)})",
        ),
        ("Interval:", f"{c.get('Interval')} (step started {c.get('StepStartedAt')})"),
        (
            "Bounds:",
            f"error rate <= {float(c.get('MaxErrorRate', 0)) * 100:g}%, "
            f"p99 <= {c.get('MaxP99')}, at least {c.get('MinRequests')} requests",
        ),
    ]
    if last:
        p99 = last.get("P99Ms")
        rows.append(
            (
                "Last:",
                f"{last.get('Requests')} requests, {last.get('Errors')} errors "
                f"({float(last.get('ErrorRate') or 0) * 100:.2f}%), "
                f"p99 {'-' if p99 is None else f'{p99:.1f}ms'}",
            )
        )
    if c.get("Reason"):
        rows.append(("Reason:", c["Reason"]))
    for h in c.get("History") or []:
        text = f"{h.get('Time')} {h.get('Event')} step {int(h.get('Step', 0)) + 1} "
        text += f"at {_pct(h.get('Weight'))}"
        if h.get("Reason"):
            text += f": {h['Reason']}"
        rows.append(("History:", text))
    return rows


def _call(client: AgentClient, method: str, path: str, what: str, body: Any = None) -> Any:
    try:
        return client.request(method, path, json_body=body).json()
    except UnexpectedResponse as exc:
        raise CLIError(f"Error {what}: {exc.body or exc.message}") from None


@click.group("canary")
def canary() -> None:
    """Canary releases that promote or roll back themselves."""


@canary.command("start")
@click.argument("service")
@click.option("--to", "to", required=True, metavar="SUBSET", help="The canary subset.")
@click.option("--from", "frm", default="", metavar="SUBSET", help="The stable subset.")
@click.option("--steps", default="5,10,25,50,100", help="Weights of To, in percent.")
@click.option("--interval", default="30s", help="How long each step is watched.")
@click.option("--max-error-rate", default="1%", help="Highest error rate (1% or 0.01).")
@click.option("--max-p99", default="300ms", help="Highest p99 latency.")
@click.option(
    "--min-requests", type=click.IntRange(min=0), default=20, help="Requests a step needs."
)
@agent_options(output=True)
def start(
    client: AgentClient,
    fmt: str,
    service: str,
    to: str,
    frm: str,
    steps: str,
    interval: str,
    max_error_rate: str,
    max_p99: str,
    min_requests: int,
) -> None:
    """Start a canary release of SERVICE towards subset --to."""
    body: dict[str, Any] = {
        "To": to,
        "Steps": parse_steps(steps),
        "Interval": check_duration("--interval", interval),
        "MaxErrorRate": parse_rate(max_error_rate),
        "MaxP99": check_duration("--max-p99", max_p99),
        "MinRequests": min_requests,
    }
    if frm:
        body["From"] = frm
    out = _call(client, "POST", f"{PATH}/{service}", "starting canary", body)
    if fmt == "json":
        echo_json(out)
        return
    click.echo(
        f"Canary of {service} started: {out['From']} -> {out['To']} at {_pct(out['Weight'])}, "
        f"next step in {out['Interval']}"
    )


@canary.command("status")
@click.argument("service", required=False)
@agent_options(output=True)
def status(client: AgentClient, fmt: str, service: str | None) -> None:
    """Show every canary, or SERVICE's in detail."""
    if service:
        out = _call(client, "GET", f"{PATH}/{service}", "reading canary")
        if fmt == "json":
            echo_json(out)
        else:
            echo_pairs(detail_rows(out))
        return
    items = _call(client, "GET", PATH, "listing canaries")
    if fmt == "json":
        echo_json(items)
        return
    rows = [
        (
            c["Service"],
            c["State"],
            f"{c['From']} -> {c['To']}",
            _pct(c["Weight"]),
            f"{c['Step'] + 1}/{len(c['Steps'])}",
            c.get("Reason") or "",
        )
        for c in items
    ]
    echo_table(["Service", "State", "Subsets", "Weight", "Step", "Reason"], rows)


def _change(kind: str, past: str) -> click.Command:
    @click.argument("service")
    @agent_options(output=True)
    def command(client: AgentClient, fmt: str, service: str) -> None:
        out = _call(client, "PUT", f"{PATH}/{service}/{kind}", f"trying to {kind} canary")
        if fmt == "json":
            echo_json(out)
            return
        click.echo(f"Canary of {service} {past} ({out['To']} at {_pct(out['Weight'])})")

    command.__doc__ = f"{kind.capitalize()} the canary of SERVICE."
    return click.command(kind)(command)


canary.add_command(_change("pause", "paused"))
canary.add_command(_change("resume", "resumed"))
canary.add_command(_change("abort", "aborted: everything back on the stable subset"))
