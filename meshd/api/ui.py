"""The web UI at ``/ui/`` (Consul's path; ``GET /`` redirects there), served
when ``ui_config.enabled`` or ``-ui`` is set (on in ``-dev``).

The files are plain HTML/CSS/ES modules shipped in ``meshd/ui/static``: no
build step. They are read once (on the first request) and kept, so a request
can only name a file of that fixed set (no directory traversal: a path is a
dictionary key, never joined onto the file system). Each answer carries a
strong ``ETag`` (a hash of the bytes) and ``Cache-Control: no-cache``, so a
browser revalidates and gets ``304 Not Modified`` until an upgrade changes a
file. The pages read the API with the user's token from the browser's
session storage; the static files themselves need no ACL, as in Consul.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from ..http import NotFound, Request, Response

if TYPE_CHECKING:
    from .ports import Configured

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".ico": "image/x-icon",
}
# The page may run only its own scripts and talk only to its own agent.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """Every file under ``meshd/ui/static``, keyed by its path relative to it."""
    files: dict[str, StaticFile] = {}
    root = resources.files("meshd.ui").joinpath("static")

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            ctype = CONTENT_TYPES.get(suffix)
            if ctype is None:
                continue  # only known kinds are served
            body = child.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[name] = StaticFile(body, ctype, etag)

    walk(root, "")
    return files


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def serve_file(files: dict[str, StaticFile], path: str, req: Request) -> Response:
    """The answer for ``path`` (relative to /ui/): the file, a 304, or 404."""
    item = files.get(path or "index.html")
    if item is None:
        raise NotFound("file not found")
    headers = [
        ("ETag", item.etag),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if item.content_type.startswith("text/html"):
        headers += [("Content-Security-Policy", _CSP), ("Referrer-Policy", "no-referrer")]
    if _etag_matches(req.headers.get("if-none-match"), item.etag):
        return Response(304, headers)
    return Response(200, [("Content-Type", item.content_type), *headers], item.body)


def enabled(agent: Configured) -> bool:
    """Whether the UI's rows of the route table exist (``ui_config.enabled``)."""
    return agent.config.ui_config.enabled


@functools.cache
def _files() -> dict[str, StaticFile]:
    return load_static()


async def redirect(agent: Configured, req: Request) -> Response:
    """``GET /`` and ``GET /ui``: to the UI's index."""
    return Response(301, [("Location", "/ui/")])


async def static(agent: Configured, req: Request) -> Response:
    """``GET /ui/*path``: one of the shipped files."""
    return serve_file(_files(), req.path_params.get("path", ""), req)
