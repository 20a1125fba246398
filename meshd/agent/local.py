"""The agent's local services and checks: the truth for its own node.

Services and checks registered through the API are persisted in
``<data_dir>/local/state.msgpack`` (written to a temp file, fsynced, renamed)
and restored on restart, as Consul persists them; ones from configuration
files are not persisted (the files are their source). Every change bumps
``version`` and wakes ``changed`` so anti-entropy pushes it at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import trio

from registry.codec import from_obj, to_obj
from registry.errors import NotFoundError
from registry.records import HealthCheck, ServiceInstance

from ..defs import sidecar
from ..defs.definitions import CheckDefinition, ServiceDefinition

log = logging.getLogger("meshd.local")
OUTPUT_LIMIT = 4096


class LocalState:
    def __init__(self, node: str, data_dir: Path | None, *, sidecar_address: str = "") -> None:
        self.node = node
        # Where sidecars without an Address (theirs or their parent's) listen;
        # "" lets the proxy bind all interfaces, as Consul's Envoy does.
        self.sidecar_address = sidecar_address
        self._path = data_dir / "local" / "state.msgpack" if data_dir else None
        self.services: dict[str, ServiceDefinition] = {}
        self.checks: dict[str, CheckDefinition] = {}
        self.persisted_ids: set[str] = set()  # service and check IDs from the API
        self.version = 0
        self._changed = trio.Event()

    # -------------------------------------------------------------- change

    def _bump(self) -> None:
        self.version += 1
        self.poke()

    def poke(self) -> None:
        """Wake ``wait_changed`` waiters without a change (someone else saw
        a reason to look again, e.g. the catalog changed under the agent)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # ------------------------------------------------------------ services

    def add_service(self, defn: ServiceDefinition, *, persist: bool = True) -> None:
        """Add or replace a service and its checks (checks it had before that
        the new definition lacks are removed). A ``Connect.SidecarService``
        adds the sidecar proxy too (see ``sidecar``); raises
        ``ValidationError`` for a bad one before anything changes."""
        parent, proxy = sidecar.expand(
            defn, self.services, node=self.node, default_address=self.sidecar_address
        )
        self._add_one(parent, persist)
        if proxy is not None:
            self._add_one(proxy, persist)
        self._bump()
        self._save()

    def _add_one(self, defn: ServiceDefinition, persist: bool) -> None:
        sid = defn.service.id
        old = self.services.get(sid)
        if old is not None:
            keep = {c.check.check_id for c in defn.checks}
            for c in old.checks:
                if c.check.check_id not in keep:
                    self.checks.pop(c.check.check_id, None)
        self.services[sid] = defn
        for c in defn.checks:
            prev = self.checks.get(c.check.check_id)
            if prev is not None and prev.check.status and "Status" not in c.spec:
                # Re-registering keeps a check's current status (Consul does too).
                c = replace(c, check=replace(c.check, status=prev.check.status))
            self.checks[c.check.check_id] = c
        if persist:
            self.persisted_ids.add(sid)

    def remove_service(self, service_id: str) -> None:
        """Remove a service, its checks and the sidecar registered with it.
        Raises ``NotFoundError`` for an unknown ID."""
        if service_id not in self.services:
            raise NotFoundError(
                f'Unknown service ID "{service_id}". '
                "Ensure that the service ID is passed, not the service name."
            )
        proxy = self.services.get(sidecar.sidecar_id(service_id))
        if proxy is not None and sidecar.is_sidecar_of(proxy, service_id):
            self._remove_one(proxy.service.id)
        self._remove_one(service_id)
        self._bump()
        self._save()

    def _remove_one(self, service_id: str) -> None:
        self.services.pop(service_id)
        for cid in [cid for cid, c in self.checks.items() if c.check.service_id == service_id]:
            del self.checks[cid]
        self.persisted_ids.discard(service_id)

    # -------------------------------------------------------------- checks

    def add_check(self, defn: CheckDefinition, *, persist: bool = True) -> None:
        sid = defn.check.service_id
        if sid and sid not in self.services:
            raise NotFoundError(f'ServiceID "{sid}" does not exist')
        if sid:
            svc = self.services[sid].service
            defn = replace(
                defn,
                check=replace(defn.check, service_name=svc.service, service_tags=svc.tags),
            )
        self.checks[defn.check.check_id] = defn
        if persist:
            self.persisted_ids.add("check:" + defn.check.check_id)
        self._bump()
        self._save()

    def remove_check(self, check_id: str) -> None:
        if self.checks.pop(check_id, None) is None:
            raise NotFoundError(f'Unknown check ID "{check_id}"')
        self.persisted_ids.discard("check:" + check_id)
        self._bump()
        self._save()

    def update_check(self, check_id: str, status: str, output: str) -> bool:
        """Set a check's status and output (capped at 4 KiB); returns whether
        anything changed. Raises ``NotFoundError``."""
        defn = self.checks.get(check_id)
        if defn is None:
            raise NotFoundError(f'Unknown check ID "{check_id}"')
        output = output[:OUTPUT_LIMIT]
        if defn.check.status == status and defn.check.output == output:
            return False
        self.checks[check_id] = replace(
            defn, check=replace(defn.check, status=status, output=output)
        )
        self._bump()
        return True

    def service_checks(self, service_id: str) -> list[HealthCheck]:
        return [c.check for c in self.checks.values() if c.check.service_id == service_id]

    def node_checks(self) -> list[HealthCheck]:
        return [c.check for c in self.checks.values() if not c.check.service_id]

    # --------------------------------------------------------- persistence

    def _save(self) -> None:
        if self._path is None:
            return
        doc: dict[str, Any] = {"v": 1, "services": [], "checks": []}
        for sid in sorted(self.persisted_ids):
            if sid.startswith("check:"):
                c = self.checks.get(sid[6:])
                if c is not None:
                    doc["checks"].append(
                        {"check": to_obj(c.check, HealthCheck), "kind": c.kind, "spec": c.spec}
                    )
            elif sid in self.services:
                d = self.services[sid]
                doc["services"].append(
                    {
                        "service": to_obj(d.service, ServiceInstance),
                        "token": d.token,
                        "checks": [
                            {"check": to_obj(c.check, HealthCheck), "kind": c.kind, "spec": c.spec}
                            for c in d.checks
                        ],
                    }
                )
        try:
            data = msgpack.packb(doc, use_bin_type=True)
        except (ValueError, TypeError, OverflowError) as exc:
            # The API refuses values msgpack cannot encode; should one still
            # get here, keep the last good file rather than fail the caller.
            log.error("event=local_state_unsaved file=%s reason=%s", self._path, exc)
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def load(self) -> int:
        """Restore persisted services and checks; returns how many. A file
        that does not decode is logged and left in place (renamed .bad)."""
        if self._path is None or not self._path.exists():
            return 0
        try:
            doc = msgpack.unpackb(self._path.read_bytes(), raw=False)
            services = [
                ServiceDefinition(
                    from_obj(s["service"], ServiceInstance),
                    tuple(
                        CheckDefinition(from_obj(c["check"], HealthCheck), c["kind"], c["spec"])
                        for c in s["checks"]
                    ),
                    s.get("token", ""),
                )
                for s in doc["services"]
            ]
            checks = [
                CheckDefinition(from_obj(c["check"], HealthCheck), c["kind"], c["spec"])
                for c in doc["checks"]
            ]
        except Exception as exc:  # a corrupt file must not stop the agent
            bad = self._path.with_suffix(".bad")
            os.replace(self._path, bad)
            log.error(
                "event=local_state_corrupt file=%s moved_to=%s reason=%s", self._path, bad, exc
            )
            return 0
        for s in services:
            self.add_service(s)
        for c in checks:
            if not c.check.service_id or c.check.service_id in self.services:
                self.add_check(c)
        return len(services) + len(checks)
