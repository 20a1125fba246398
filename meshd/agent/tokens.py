"""The agent's own ACL tokens (``/v1/agent/token/<kind>``).

They start from ``acl.tokens`` in the configuration. Tokens set through the
API live in memory and, with ``acl.enable_token_persistence``, in
``<data_dir>/acl-tokens.json`` (mode 0600, written to a temp file, fsynced,
renamed), which then wins over the configuration on the next start, as in
Consul. Token values are never logged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..acl.token_kinds import KINDS
from ..config import ACLConfig

__all__ = ["KINDS", "TokenStore"]

log = logging.getLogger("meshd.agent")

FILE_NAME = "acl-tokens.json"


class TokenStore:
    def __init__(self, acl: ACLConfig, data_dir: Path | None) -> None:
        t = acl.tokens
        self._tokens: dict[str, str] = {
            kind: value
            for kind, value in (
                ("default", t.default),
                ("agent", t.agent),
                ("agent_recovery", t.agent_recovery),
                ("replication", t.replication),
            )
            if value
        }
        self.persist = acl.enable_token_persistence and data_dir is not None
        self._path = data_dir / FILE_NAME if data_dir is not None else None
        if self.persist:
            self._load()

    def apply_config(self, old: ACLConfig, new: ACLConfig) -> None:
        """A reload: tokens whose configured value changed take the new value;
        the others keep what the API set."""
        for kind in ("default", "agent", "agent_recovery", "replication"):
            before, after = getattr(old.tokens, kind), getattr(new.tokens, kind)
            if before != after:
                self.set(kind, after or "")

    def get(self, kind: str) -> str:
        return self._tokens.get(KINDS.get(kind, kind), "")

    def set(self, kind: str, token: str) -> None:
        """Set the token of a URL ``kind``; raises ``KeyError`` for an unknown kind."""
        stored = KINDS[kind]
        if token:
            self._tokens[stored] = token
        else:
            self._tokens.pop(stored, None)
        log.info("event=agent_token_updated kind=%s persisted=%s", stored, self.persist)
        if self.persist:
            self._save()

    def _load(self) -> None:
        assert self._path is not None
        try:
            doc = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("event=acl_tokens_unreadable file=%s reason=%s", self._path, exc)
            return
        if isinstance(doc, dict):
            self._tokens.update({k: v for k, v in doc.items() if k in KINDS.values() and v})

    def _save(self) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._tokens, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
