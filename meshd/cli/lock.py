"""``meshd lock PREFIX CHILD...`` (like ``consul lock``): run CHILD while
holding the lock at ``PREFIX/.lock`` (with ``-n N``, one of N slots of the
semaphore at PREFIX: see ``lock_semaphore``).

The lock is a KV key acquired with a session (PUT /v1/kv/..?acquire=). The
session has a TTL (``-ttl``, 15s by default) that this command renews at
half the TTL while the child runs, so if this process dies the servers let
the session expire and the lock is released within 2 x TTL (Consul's
guarantee; it needs the servers' session TTL expiry). If the session is
lost while the child runs (renewal refused), the child is terminated. On a
clean exit the lock is released, the key deleted if nobody else holds it,
and the session destroyed.

Exit status: 0 once the child ran, whatever its status, unless
``-child-exit-code`` (then 2 when it failed); 1 when the lock could not be
taken (``Lock acquisition failed: ...``).
https://developer.hashicorp.com/consul/commands/lock
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import threading
import time
from typing import Any

import click

from ..durations import parse_duration
from .client import AgentClient, quote_path
from .errors import AgentUnreachable, CLIError, UnexpectedResponse
from .lock_semaphore import Semaphore
from .options import agent_options, flag, option

# Consul's api.LockFlagValue: marks a key as a lock (not a semaphore).
LOCK_FLAG = 0x2DDCCBC058A50C18
WAIT = 60.0  # seconds a blocking query waits while someone else holds the lock


def _seconds(text: str, what: str) -> float:
    try:
        return float(parse_duration(text)) if text else 0.0
    except ValueError as exc:
        raise CLIError(f"Error: invalid -{what} {text!r}: {exc}") from None


class _Session:
    """The lock's session and the thread that keeps renewing it."""

    def __init__(self, client: AgentClient, name: str, ttl: str) -> None:
        self.client = client
        body = {"Name": name, "TTL": ttl, "Behavior": "release"}
        self.id: str = client.request("PUT", "/v1/session/create", json_body=body).json()["ID"]
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._interval = max(_seconds(ttl, "ttl") / 2, 0.5)
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def start_renewing(self) -> None:
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                resp = self.client.request("PUT", f"/v1/session/renew/{self.id}", allow=(404,))
            except (AgentUnreachable, UnexpectedResponse):
                continue  # try again; the TTL leaves room for one miss
            if resp.status == 404:
                self.lost.set()
                return

    def destroy(self) -> None:
        self._stop.set()
        with contextlib.suppress(AgentUnreachable, UnexpectedResponse):  # else the TTL ends it
            self.client.request("PUT", f"/v1/session/destroy/{self.id}")


def _acquire(client: AgentClient, key: str, session: str, timeout: float) -> bool:
    """Take the lock, waiting while another session holds it; False on timeout."""
    path = f"/v1/kv/{quote_path(key)}"
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        got = client.request(
            "PUT", path, params={"acquire": session, "flags": LOCK_FLAG}, body=b""
        ).json()
        if got is True:
            return True
        index = 0
        while True:  # wait for the holder to let go
            wait = WAIT
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(wait, max(left, 0.01))
            params: dict[str, Any] = {
                "index": index or None,
                "wait": f"{wait:.3f}s" if index else None,
            }
            resp = client.request("GET", path, params=params, allow=(404,))
            entries = resp.json() if resp.status == 200 else []
            if not entries or not entries[0].get("Session"):
                if not index:  # free yet refused: the lock-delay of a lost holder
                    time.sleep(0.5)
                break
            index = resp.index


def _release(client: AgentClient, key: str, session: str) -> None:
    path = f"/v1/kv/{quote_path(key)}"
    try:
        client.request("PUT", path, params={"release": session, "flags": LOCK_FLAG}, body=b"")
        resp = client.request("GET", path, allow=(404,))
        if resp.status == 200:
            entry = resp.json()[0]
            if not entry.get("Session"):  # Consul's Lock.Destroy: remove an unused key
                client.request("DELETE", path, params={"cas": entry.get("ModifyIndex", 0)})
    except (AgentUnreachable, UnexpectedResponse) as exc:
        click.echo(f"Lock release failed: {exc.message}", err=True)


def _run_child(command: str, shell: bool, pass_stdin: bool, lost: threading.Event) -> int:
    """Run the child until it exits (terminated if the lock is lost); its status."""
    args: str | list[str] = command if shell else shlex.split(command)
    stdin = None if pass_stdin else subprocess.DEVNULL
    child = subprocess.Popen(args, shell=shell, stdin=stdin)

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if lost.is_set():
                click.echo("Lock lost, killing child", err=True)
                child.terminate()
                try:
                    return child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("prefix")
@click.argument("child", nargs=-1, required=True)
@option(
    "n",
    "limit",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Holders at once (more than 1: a semaphore).",
)
@option("name", "name", default="", help="Name of the lock's session.")
@option("ttl", "ttl", default="15s", show_default=True, help="TTL of the lock's session.")
@option("timeout", "timeout", default="", help="Give up acquiring after this long (default: wait).")
@option("try", "try_", default="", metavar="DURATION", help="Like -timeout.")
@flag("pass-stdin", "Give our stdin to the child.", dest="pass_stdin")
@option("shell", "shell", type=bool, default=True, show_default=True, help="Run CHILD with sh -c.")
@flag("child-exit-code", "Exit 2 when the child fails.", dest="child_exit_code")
@flag("verbose", "Say what happens.")
@agent_options()
def lock(
    client: AgentClient,
    prefix: str,
    child: tuple[str, ...],
    limit: int,
    name: str,
    ttl: str,
    timeout: str,
    try_: str,
    pass_stdin: bool,
    shell: bool,
    child_exit_code: bool,
    verbose: bool,
) -> None:
    """Run CHILD while holding the lock at PREFIX/.lock."""
    wait = _seconds(try_ or timeout, "try" if try_ else "timeout")
    _seconds(ttl, "ttl")
    key = prefix.strip("/") + "/.lock"
    command = " ".join(child)
    client.timeout = max(client.timeout, 90.0)
    try:
        session = _Session(client, name or f"Lock for {command!r} at {prefix}", ttl)
    except UnexpectedResponse as exc:
        raise CLIError(f"Lock acquisition failed: {exc.message}") from None
    session.start_renewing()  # from the start: waiting may take longer than the TTL
    semaphore = Semaphore(client, prefix, session.id, limit) if limit > 1 else None
    try:
        held = semaphore.acquire(wait) if semaphore else _acquire(client, key, session.id, wait)
        if not held:
            raise CLIError("Shutdown triggered or timeout during lock acquisition")
        if verbose:
            click.echo(f"Lock acquired: {key} (session {session.id})", err=True)
        status = _run_child(command, shell, pass_stdin, session.lost)
        if semaphore:
            semaphore.release()
        else:
            _release(client, key, session.id)
        if verbose:
            click.echo(f"Lock released: {key}", err=True)
    except UnexpectedResponse as exc:
        raise CLIError(f"Lock acquisition failed: {exc.message}") from None
    finally:
        session.destroy()
    if status != 0:
        click.echo(f"Error running handler: exit status {status}", err=True)
        if child_exit_code:
            raise SystemExit(2)
