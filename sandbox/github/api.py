"""The REST front door: routes (method + path pattern -> handler), the request context handlers read, GitHub's
error shape and its pagination (`per_page` up to 100, `page`, and a `Link` header with next/last/first/prev)."""
from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..common.errors import HttpError
from .auth import Identity
from .model import Repo
from .render import Urls

if TYPE_CHECKING:
    from ..common.http import Request
    from .server import GitHubSandbox

DOCS = "https://docs.github.com/rest"


class GitHubError(HttpError):
    """An error answer in GitHub's shape: `message`, `documentation_url`, `status` (and `errors` for a 422)."""

    def __init__(self, code: int, message: str, *, errors: list[dict] | None = None,
                 documentation_url: str = DOCS, headers: dict[str, str] | None = None) -> None:
        super().__init__(code, "GitHubError", message, headers=headers)
        self.errors = errors
        self.documentation_url = documentation_url


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def invalid(message: str, errors: list[dict] | None = None) -> GitHubError:
    return GitHubError(422, message, errors=errors)


def missing_field(resource: str, name: str) -> GitHubError:
    return invalid("Validation Failed", [{"resource": resource, "code": "missing_field", "field": name}])


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None                  # a non-JSON body (a log)
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Ctx:
    gh: "GitHubSandbox"
    request: "Request"
    path: str                                  # without the API prefix
    params: dict[str, str]
    identity: Identity
    now: float = field(default_factory=time.time)

    @property
    def urls(self) -> Urls:
        return self.gh.urls

    @property
    def repo(self) -> Repo:
        repo = self.gh.repo(f"{self.params['owner']}/{self.params['repo']}")
        if repo is None:
            raise not_found()
        return repo

    def json(self) -> dict:
        raw = self.request.body
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise GitHubError(400, "Problems parsing JSON") from None
        if not isinstance(body, dict):
            raise GitHubError(400, "Problems parsing JSON")
        return body

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query.get(name, default)


Handler = Callable[[Ctx], Answer]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register a handler; `{name}` in the pattern matches one path segment."""
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")

    def register(handler: Handler) -> Handler:
        ROUTES.append((method, regex, handler))
        return handler
    return register


def match(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    """The handler for a request; where several patterns match, the one with the fewest parameters (so
    `issues/comments` is not read as issue number "comments")."""
    best: tuple[int, Handler, dict[str, str]] | None = None
    for verb, regex, handler in ROUTES:
        found = regex.match(path)
        if found and verb == method and (best is None or len(found.groupdict()) < best[0]):
            best = (len(found.groupdict()), handler, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()})
    if best is None:
        raise not_found()           # GitHub answers an unknown path, and a wrong method on a known one, with 404
    return best[1], best[2]


def page(ctx: Ctx, items: list, key: str | None = None) -> Answer:
    """One page of `items` (`per_page` default 30, at most 100), with GitHub's Link header; `key`: the list is
    wrapped as `{"total_count": n, key: [...]}` (Actions and check runs)."""
    per_page = _positive(ctx.query("per_page"), 30, 100)
    number = _positive(ctx.query("page"), 1, None)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(number - 1) * per_page: number * per_page]
    links = []
    if number < last:
        links += [(number + 1, "next"), (last, "last")]
    if number > 1:
        links += [(1, "first"), (min(number - 1, last), "prev")]
    headers = {"Link": ", ".join(f'<{_page_url(ctx, n)}>; rel="{rel}"' for n, rel in links)} if links else {}
    body = {"total_count": len(items), key: chunk} if key else chunk
    return Answer(200, body, headers)


def _positive(text: str | None, default: int, cap: int | None) -> int:
    try:
        value = int(text) if text not in (None, "") else default
    except ValueError:
        value = default
    value = max(value, 1)
    return min(value, cap) if cap else value


def _page_url(ctx: Ctx, number: int) -> str:
    query = {**ctx.request.query, "page": str(number)}
    return f"{ctx.urls.api}{ctx.path}?{urllib.parse.urlencode(query)}"
