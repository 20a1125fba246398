"""``meshd explain SRC DST [-X METHOD] [-H 'name: value' ...] PATH``.

Asks the agent's ``/v1/internal/explain`` what the mesh would do with that
request from SRC to DST and prints it compactly: the intention decision,
the route that matched, the split buckets and the pick, the resolver
target (subset filter, failover, redirect), the instances that are
eligible and those ejected (why, until when), the timeout and retries that
apply, and where the request would go. ``-format=json`` prints the API's
answer unchanged. PATH may carry a query string (``/cart?x=1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options
from .output import echo_json, echo_pairs

PATH = "/v1/internal/explain"
_LOCAL = {400: "400 (bad path)", 404: "404 (no route)", 503: "503 no healthy upstream"}


def parse_headers(values: Sequence[str]) -> dict[str, list[str]]:
    """``name: value`` strings -> the API's Headers object; CLIError if malformed."""
    out: dict[str, list[str]] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise CLIError(f"Error: -H expects 'name: value', got {item!r}")
        out.setdefault(name.strip(), []).append(value.strip())
    return out


def _seconds(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}s"


def match_text(match: Mapping[str, Any] | None) -> str:
    """A router Match as one line: ``PathPrefix /a, header x-v exact "2", GET``."""
    http = (match or {}).get("HTTP") or {}
    parts: list[str] = []
    for key in ("PathExact", "PathPrefix", "PathRegex"):
        if http.get(key):
            parts.append(f"{key} {http[key]}")
    for kind, items in (("header", http.get("Header")), ("query", http.get("QueryParam"))):
        for h in items or []:
            how = next((k for k in ("Exact", "Prefix", "Suffix", "Regex") if h.get(k)), "")
            text = f"{how.lower()} {h[how]!r}" if how else "present"
            parts.append(f"{kind} {h.get('Name')} {'not ' if h.get('Invert') else ''}{text}")
    if http.get("Methods"):
        parts.append("/".join(http["Methods"]))
    return ", ".join(parts) or "any request"


def _route(out: Mapping[str, Any]) -> str:
    route = out.get("Route")
    if route is None:
        return "no router (every request goes to the service's resolver)"
    kind = "default route" if route.get("Default") else f"route #{route['Index']}"
    return f"{kind}: {match_text(route.get('Match'))} -> {route.get('NextNode')}"


def _splits(out: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for step in out.get("Splits") or []:
        buckets = [
            f"{b['NextNode']} {b['Weight']:g}%{' <- picked' if i == step['Picked'] else ''}"
            for i, b in enumerate(step.get("Buckets") or [])
        ]
        rows.append(("Split:", f"{step['Node']}: " + "; ".join(buckets)))
    return rows


def _target_rows(t: Mapping[str, Any]) -> list[tuple[str, str]]:
    desc = f"{t['ID']} (service {t.get('Service')}"
    if t.get("ServiceSubset"):
        desc += f", subset {t['ServiceSubset']}"
    if t.get("Filter"):
        desc += f", filter {t['Filter']}"
    rows = [("Target:", desc + ")")]
    if t.get("RedirectedFrom"):
        rows.append(("  Redirected:", f"from service {t['RedirectedFrom']}"))
    if t.get("Failover"):
        rows.append(("  Failover:", ", ".join(t["Failover"])))
    for inst in t.get("Eligible") or []:
        rows.append(("  Eligible:", f"{inst['Address']} {inst.get('ServiceID') or ''}".strip()))
    for ej in t.get("Ejected") or []:
        why = f"{ej.get('Reason') or 'ejected'}"
        if ej.get("LastStatus") is not None:
            why += f", last status {ej['LastStatus']}"
        if ej.get("Until"):
            why += f", until {ej['Until']}"
        if ej.get("TimesEjected"):
            why += f", ejected {ej['TimesEjected']}x"
        rows.append(("  Ejected:", f"{ej['Address']} ({why})"))
    if not t.get("Eligible") and not t.get("Ejected"):
        rows.append(("  Instances:", "none healthy"))
    return rows


def _retry(retry: Mapping[str, Any] | None) -> str:
    if not retry or not retry.get("NumRetries"):
        return "none"
    text = f"{retry['NumRetries']}"
    on = [c for c in retry.get("RetryOn") or [] if c != "retriable-status-codes"]
    on += [f"status {c}" for c in retry.get("RetryOnStatusCodes") or []]
    if on:
        text += f", on {', '.join(on)}"
    if not retry.get("RetryNonIdempotent"):
        text += " (idempotent methods only)"
    return text


def _outliers(out: Mapping[str, Any]) -> str:
    o = out.get("OutlierDetection") or {}
    base = _seconds(o.get("BaseEjectionTime"))
    text = (
        f"eject after {o.get('MaxFailures')} consecutive 5xx for {base}"
        f" x times ejected, at most {o.get('MaxEjectionPercent')}%"
        f" ({'PassiveHealthCheck' if o.get('Configured') else 'defaults'})"
    )
    reporters = out.get("EjectionsReportedBy") or []
    if reporters:
        return f"{text}; ejections reported by {', '.join(reporters)}"
    return f"{text}; no proxy of {out.get('Source')} on this agent reports ejections"


def report_rows(out: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The human-readable report of an explain answer, as label/value rows."""
    req = out.get("Request") or {}
    target = req.get("Path", "") + (f"?{req['Query']}" if req.get("Query") else "")
    ixn = out.get("Intention") or {}
    verdict = "allowed" if ixn.get("Allowed") else "denied"
    rows = [
        (
            "Request:",
            f"{req.get('Method')} {target} ({out.get('Source')} => {out.get('Destination')})",
        ),
        ("Intention:", f"{verdict} ({ixn.get('Evaluated')}): {ixn.get('Reason')}"),
        ("Protocol:", f"{out.get('Protocol')} ({'L7' if out.get('L7') else 'L4, spliced'})"),
    ]
    if out.get("L7"):
        rows.append(("Route:", _route(out)))
        rows += _splits(out)
    for t in out.get("Targets") or []:
        rows += _target_rows(t)
    if out.get("L7"):
        rows.append(("Timeout:", _seconds(out.get("TimeoutSeconds"))))
        rows.append(("Retries:", _retry(out.get("Retry"))))
        rows.append(("Outliers:", _outliers(out)))
    status = out.get("LocalStatus")
    if ixn and not ixn.get("Allowed"):
        rows.append(("Result:", f"denied by intention: {out.get('Destination')} refuses it"))
    elif status is not None:
        rows.append(("Result:", f"the proxy answers {_LOCAL.get(status, status)}"))
    elif out.get("Endpoint"):
        rows.append(("Result:", f"forwarded to {out['Endpoint']} ({out.get('Target')})"))
    return rows


@click.command("explain")
@click.argument("src")
@click.argument("dst")
@click.argument("path", default="/")
@click.option("-X", "--request", "method", default="GET", metavar="METHOD", help="HTTP method.")
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="A request header."
)
@click.option("--seed", type=int, default=None, help="Seed the split pick (repeatable answers).")
@agent_options(output=True)
def explain(
    client: AgentClient,
    fmt: str,
    src: str,
    dst: str,
    path: str,
    method: str,
    headers: tuple[str, ...],
    seed: int | None,
) -> None:
    """Explain what the mesh does with a request from SRC to DST for PATH."""
    body: dict[str, Any] = {
        "Source": src,
        "Destination": dst,
        "Method": method,
        "Path": path,
        "Headers": parse_headers(headers),
    }
    if seed is not None:
        body["Seed"] = seed
    try:
        out = client.request("POST", PATH, json_body=body).json()
    except UnexpectedResponse as exc:
        raise CLIError(f"Error explaining the request: {exc.body or exc.message}") from None
    if fmt == "json":
        echo_json(out)
        return
    echo_pairs(report_rows(out))
