"""Issues and their comments, found again by a marker (an HTML comment in the body, invisible on GitHub).

One issue per key (a CI failure signature, an incident): `find_issue` lists the repository's issues with the
key's label and looks for the marker, skipping pull requests (GitHub lists them as issues too); `open_issue`
and `comment_issue` are safe to retry (`create_once`): a retry looks for the marker before posting again.
"""
from __future__ import annotations

from typing import Callable, Literal

from github import Github
from github.Issue import Issue
from github.IssueComment import IssueComment
from github.PaginatedList import PaginatedList
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ..calls import TASK_RETRIES, call, retry_if_transient
from .rest import create_once, post, repo_of

PER_PAGE = 100


class IssueRef(BaseModel):
    number: int
    url: str
    state: str
    title: str = ""


class IssueWrite(BaseModel):
    """What `open_issue` / `comment_issue` did: `changed` False when the marker was there already."""
    changed: bool
    dry_run: bool
    action: Literal["opened", "commented", "none"]
    number: int | None = None
    url: str = ""


def marker(kind: str, key: str) -> str:
    return f"<!-- runbooks:{kind}:{key} -->"


def _issues(gh: Github, repository: str, label: str, state: str) -> PaginatedList:
    return PaginatedList(Issue, gh.requester, f"{repo_of(gh, repository).url}/issues",
                         {"labels": label, "state": state, "per_page": PER_PAGE})


def _find(gh: Github, repository: str, label: str, mark: str, state: str) -> IssueRef | None:
    for issue in _issues(gh, repository, label, state):
        raw = issue._rawData                   # as listed: no completing GET per issue
        if "pull_request" not in raw and mark in (raw.get("body") or ""):
            return IssueRef(number=raw["number"], url=raw.get("html_url") or "", state=raw.get("state") or "",
                            title=raw.get("title") or "")
    return None


@task(name="find_issue", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def find_issue(gh: Github, *, repository: str, label: str, mark: str, state: str = "open") -> IssueRef | None:
    """The issue with `label` whose body carries `mark`, or None."""
    return call(_find, gh, repository, label, mark, state)


class IssueText(BaseModel):
    number: int
    url: str
    body: str
    comments: list[str] = []


@task(name="list_issue_texts", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_issue_texts(gh: Github, *, repository: str, label: str,
                     with_comments: Callable[[str], bool] = lambda body: False) -> list[IssueText]:
    """Open issues with `label` (pull requests left out), with the comments of those whose body
    `with_comments` picks (one more request each; the others cost nothing more)."""
    def fetch() -> list[IssueText]:
        found = []
        for issue in _issues(gh, repository, label, "open"):
            raw = issue._rawData
            if "pull_request" in raw:
                continue
            body = raw.get("body") or ""
            comments = []
            if with_comments(body) and raw.get("comments"):
                listed = PaginatedList(IssueComment, gh.requester, f"{raw['url']}/comments", {"per_page": PER_PAGE})
                comments = [c._rawData.get("body") or "" for c in listed]
            found.append(IssueText(number=raw["number"], url=raw.get("html_url") or "", body=body, comments=comments))
        return found
    return call(fetch)


@task(name="open_issue", cache_policy=NO_CACHE)        # retried inside, looking first: see create_once
def open_issue(gh: Github, *, repository: str, title: str, body: str, label: str, mark: str,
               dry_run: bool = False) -> IssueWrite:
    """Open an issue whose body carries `mark`. Never a duplicate: a retry finds the one an earlier try made."""
    if mark not in body:
        raise ValueError("the issue body must carry its marker, or it could never be found again")
    if dry_run:
        return IssueWrite(changed=False, dry_run=True, action="none")
    url = f"{repo_of(gh, repository).url}/issues"

    def create() -> IssueWrite:
        data = post(gh, url, {"title": title, "body": body, "labels": [label]})
        return IssueWrite(changed=True, dry_run=False, action="opened", number=data["number"],
                          url=data.get("html_url") or "")

    def find() -> IssueWrite | None:
        found = _find(gh, repository, label, mark, "all")
        return found and IssueWrite(changed=True, dry_run=False, action="opened", number=found.number, url=found.url)
    return create_once(create, find)


@task(name="comment_issue", cache_policy=NO_CACHE)     # retried inside, looking first: see create_once
def comment_issue(gh: Github, *, repository: str, number: int, body: str, mark: str,
                  dry_run: bool = False) -> IssueWrite:
    """Comment on an issue; the comment carries `mark` so that a retry does not post it twice."""
    if mark not in body:
        raise ValueError("the comment must carry its marker, or a retry could post it twice")
    if dry_run:
        return IssueWrite(changed=False, dry_run=True, action="none", number=number)
    url = f"{repo_of(gh, repository).url}/issues/{number}/comments"

    def create() -> IssueWrite:
        data = post(gh, url, {"body": body})
        return IssueWrite(changed=True, dry_run=False, action="commented", number=number,
                          url=data.get("html_url") or "")

    def find() -> IssueWrite | None:
        listed = PaginatedList(IssueComment, gh.requester, url, {"per_page": PER_PAGE})
        hit = next((c._rawData for c in listed if mark in (c._rawData.get("body") or "")), None)
        return hit and IssueWrite(changed=True, dry_run=False, action="commented", number=number,
                                  url=hit.get("html_url") or "")
    return create_once(create, find)
