"""The few REST helpers every GitHub task shares: a lazily opened repository, a POST that raises on any error,
and `create_once`, which makes a create (issue, comment, dispatch) safe to retry.

Why `create_once`: a POST that timed out or answered 5xx may still have created its object; sending it again
makes a second issue or a second rollback. So the first try posts at once (no extra read when nothing goes
wrong) and every retry first looks for the object by its marker, and posts only when it is not there.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from github import Github

from ..calls import call

T = TypeVar("T")


def repo_of(gh: Github, repository: str):
    """The repository without a request: its URL is all the tasks need (the client is built `lazy`)."""
    return gh.get_repo(repository)


def get(gh: Github, url: str, etag: str | None = None) -> tuple[dict | None, str | None]:
    """(JSON, ETag) of a GET; with `etag`, a conditional request: (None, etag) when unchanged (a 304, which
    GitHub does not count against the rate limit)."""
    headers, data = gh.requester.requestJsonAndCheck("GET", url, headers={"If-None-Match": etag} if etag else None)
    if not data:                # 304 Not Modified: no body
        return None, etag
    return data, headers.get("etag")


def post(gh: Github, url: str, body: dict | None = None) -> dict:
    """A POST that raises on any error status (PyGithub's `cancel()` and `rerun*()` return False instead, which
    would hide a 403 rate limit or a 409)."""
    _, data = gh.requester.requestJsonAndCheck("POST", url, input=body)
    return data or {}


def create_once(create: Callable[[], T], find: Callable[[], T | None]) -> T:
    """`create()`, retried on transient errors by `call`; before each retry, `find()` (by marker) returns what
    an earlier try made, if it did."""
    tries = 0

    def attempt() -> T:
        nonlocal tries
        tries += 1
        if tries > 1:
            found = find()
            if found is not None:
                return found
        return create()
    return call(attempt)
