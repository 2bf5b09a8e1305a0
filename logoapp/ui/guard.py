"""What stands between the network and the app: one ASGI middleware in front of every route Gradio serves, and the
check every handler makes before it opens a file a request named.

The middleware (`Guard`):
- caps request bodies on every route (uploads at the upload cap, everything else at MAX_BODY_BYTES);
- lets a request name only files Gradio wrote into its upload folder, and no `data:` or remote URL, in any input;
- closes Gradio's unqueued routes (`/run/NAME`, `/api/NAME`), so every call waits in the same queue and counts
  against the same concurrency limits, and answers 404 for endpoint names the app does not offer;
- with a login: keeps the API description out of the login page, and slows down repeated wrong logins per address;
- answers `POST /api/classify` (rest.py) itself, behind the same login and an image-sized body cap;
- sends `X-Content-Type-Options: nosniff` with every response.
"""
from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path

MAX_BODY_BYTES = 1 << 20        # JSON bodies: an API call names uploaded files, it never carries them
UPLOAD_SLACK = 1 << 20          # multipart headers around a file of the upload cap
IMAGE_BODY_BYTES = 64 << 20     # one image (/api/classify, an MCP tool call's base64 image); images.py's own cap
LOGIN_FREE_TRIES = 5            # wrong logins per address before each next try has to wait
LOGIN_MAX_WAIT = 60.0           # seconds; the wait doubles with every wrong login after the free ones
_UNQUEUED = re.compile(r"^(?:/gradio_api)?/(?:run|api)/[^/]+/?$")
_CALL = re.compile(r"^(?:/gradio_api)?/call/([^/]+)/?$")
_UPLOAD = re.compile(r"^(?:/gradio_api)?/upload/?$")
_LOGIN = re.compile(r"^(?:/gradio_api)?/login/?$")
_CLASSIFY = re.compile(r"^/api/classify/?$")
_MCP = re.compile(r"^/gradio_api/mcp/")  # MCP tool calls carry their images inline (base64)
_API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.S)


class UploadError(ValueError):
    """A request named a file that was not uploaded to this app."""


def _upload_root() -> Path:
    """Where Gradio writes uploads (and the files it serves): the only place a request may name files from."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()).resolve()


def uploaded(path) -> str:
    """path, if it names a regular file inside Gradio's upload folder (links resolved); else UploadError.
    Nothing is opened: a named pipe or a device is refused without blocking."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise UploadError("no file")
    text = str(path)
    if text.startswith(("http://", "https://", "data:")):
        raise UploadError("send the file itself as an upload, not a URL")
    try:
        real = Path(text).resolve()
        ok = real.is_relative_to(_upload_root()) and stat.S_ISREG(os.stat(real).st_mode)
    except (OSError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise UploadError("that file was not uploaded to this app; upload it first")
    return str(real)


def check_files(data) -> None:
    """Every file-like value in a request's inputs ({'path': ..., 'url': ...}) must name an upload; no data: URLs."""
    if isinstance(data, dict):
        if "path" in data or "url" in data:
            url = data.get("url")
            if isinstance(url, str) and url.startswith("data:"):
                raise UploadError("send the file itself as an upload, not a data: URL")
            if data.get("path") is not None:
                uploaded(data["path"])
        for v in data.values():
            check_files(v)
    elif isinstance(data, list):
        for v in data:
            check_files(v)


class _Logins:
    """Wrong logins per client address, and how long the next try has to wait."""

    def __init__(self):
        self.fails: dict[str, tuple[int, float]] = {}
        self.lock = threading.Lock()

    def wait(self, addr: str) -> float:
        with self.lock:
            n, last = self.fails.get(addr, (0, 0.0))
        if n < LOGIN_FREE_TRIES:
            return 0.0
        return max(0.0, last + min(LOGIN_MAX_WAIT, 0.25 * 2 ** (n - LOGIN_FREE_TRIES)) - time.monotonic())

    def record(self, addr: str, ok: bool) -> None:
        with self.lock:
            if ok:
                self.fails.pop(addr, None)
            else:
                self.fails[addr] = (self.fails.get(addr, (0, 0.0))[0] + 1, time.monotonic())
            if len(self.fails) > 10_000:  # a flood of addresses: forget the oldest
                for k, _ in sorted(self.fails.items(), key=lambda kv: kv[1][1])[:5_000]:
                    self.fails.pop(k, None)


class Guard:
    """ASGI middleware; `api_names()` gives the endpoint names the app offers (read when the first call comes)."""

    def __init__(self, app, max_upload: int, api_names, login: bool = False, classify=None):
        """classify: a rest.Classifier that answers POST /api/classify (None: the route answers 404)."""
        self.app, self.max_upload, self.api_names, self.login = app, max_upload, api_names, login
        self.classify = classify
        self.logins = _Logins()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        send = _with_headers(send)
        if self.classify is not None and _CLASSIFY.match(path):
            return await self._classify(scope, receive, send)
        if method == "POST" and _UNQUEUED.match(path):
            return await _reply(send, 404, "this route is closed: call the app through its queue, with gradio_client "
                                           "or POST /gradio_api/call/NAME")
        m = _CALL.match(path) if method == "POST" else None
        if m and m.group(1) not in self.api_names():
            return await _reply(send, 404, f"no endpoint named {m.group(1)!r}")
        if method in ("POST", "PUT", "PATCH"):
            return await self._with_body(scope, receive, send, path)
        if method == "GET" and self.login and not _logged_in(scope):
            send = _without_api_info(send)
        return await self.app(scope, receive, send)

    async def _with_body(self, scope, receive, send, path):
        cap = (self.max_upload + UPLOAD_SLACK if _UPLOAD.match(path) else
               min(self.max_upload, IMAGE_BODY_BYTES) * 4 // 3 + UPLOAD_SLACK if _MCP.match(path) else MAX_BODY_BYTES)
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await _reply(send, 413, f"request body too large (limit {cap:,} bytes)")
        if _UPLOAD.match(path):
            return await self.app(scope, receive, send)  # streamed; Gradio checks each file against the cap too
        body = await _read(receive, send, cap)
        if body is None:
            return None
        if b"json" in (_header(scope, b"content-type") or "").encode():
            try:
                check_files(json.loads(body or b"null"))
            except UploadError as e:
                return await _reply(send, 400, str(e))
            except ValueError:
                pass  # not JSON after all: the route answers that itself
        if _LOGIN.match(path) and self.login:
            return await self._login(scope, body, send)
        return await self.app(scope, replay(body), send)

    async def _classify(self, scope, receive, send):
        """POST /api/classify: the same login as every route, a body of at most one image (and the upload cap)."""
        from .rest import serve
        if scope["method"] != "POST":
            return await _reply(send, 405, "POST an image to /api/classify", [(b"allow", b"POST")])
        if self.login and not _logged_in(scope):
            return await _reply(send, 401, "log in first (POST /login with username and password, keep the cookie)")
        cap = min(self.max_upload, IMAGE_BODY_BYTES) + UPLOAD_SLACK
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await _reply(send, 413, f"request body too large (limit {cap:,} bytes)")
        return await serve(scope, lambda: _read(receive, send, cap), send, self.classify, _reply)

    async def _login(self, scope, body, send):
        addr = (scope.get("client") or ("?",))[0]
        wait = self.logins.wait(addr)
        if wait > 0:
            return await _reply(send, 429, f"too many wrong logins; try again in {wait:.0f} s",
                                [(b"retry-after", str(max(1, round(wait))).encode())])
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        await self.app(scope, replay(body), watch)
        if "code" in status:
            self.logins.record(addr, status["code"] < 300)


async def _read(receive, send, cap: int) -> bytes | None:
    """The whole request body, or None when the client left or the body passed cap (then answered 413)."""
    body, more = bytearray(), True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
        if len(body) > cap:
            await _reply(send, 413, f"request body too large (limit {cap:,} bytes)")
            return None
    return bytes(body)


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == name:
            return v.decode("latin-1")
    return None


def _logged_in(scope) -> bool:
    app = scope.get("app")
    tokens, cid = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or not cid:
        return False
    jar = SimpleCookie()
    try:
        jar.load(_header(scope, b"cookie") or "")
    except Exception:
        return False
    return any(jar.get(k) is not None and jar[k].value in tokens
               for k in (f"access-token-{cid}", f"access-token-unsecure-{cid}"))


def replay(body: bytes):
    """An ASGI receive() that hands over a body already read, once (then a disconnect)."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}
    return receive


def _with_headers(send):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-content-type-options"]
            message = {**message, "headers": headers + [(b"x-content-type-options", b"nosniff")]}
        await send(message)
    return wrapped


def _without_api_info(send):
    """Before login, the page Gradio renders must not carry the API description (endpoints, paths, model names)."""
    state = {"html": False, "start": None, "body": b""}

    async def wrapped(message):
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers", [])).get(b"content-type", b"")
            if ctype.startswith(b"text/html"):
                state["html"], state["start"] = True, message
                return None
            return await send(message)
        if message["type"] != "http.response.body" or not state["html"]:
            return await send(message)
        state["body"] += message.get("body", b"")
        if message.get("more_body"):
            return None
        body = _API_INFO.sub(b"<script>window.gradio_api_info = null;</script>", state["body"])
        start = state["start"]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return wrapped


async def _reply(send, status: int, message: str, headers=()):
    body = json.dumps({"error": message, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
