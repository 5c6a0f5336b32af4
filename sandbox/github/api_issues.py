"""Issues and their comments, shaped after the OpenAPI description's `issue` and `issue-comment`. As on GitHub,
pull requests are issues too: the issues list includes them, each with a `pull_request` key. Search
(`/search/issues`) understands `repo:`, `is:issue`/`is:pr`, `is:open`/`is:closed`, `label:`, `in:title`/
`in:body` and free words."""
from __future__ import annotations

import datetime as dt

from . import render
from .api import Answer, Ctx, invalid, missing_field, not_found, page, route
from .model import Comment, Issue, Label, Repo, next_id


def _issue(ctx: Ctx) -> Issue:
    text = ctx.params["number"]
    found = ctx.repo.issues.get(int(text)) if text.isdigit() else None
    if found is None:
        raise not_found()
    return found


def labels_for(repo: Repo, names: object) -> list[Label]:
    """Labels by name; GitHub creates the ones a repository does not have yet."""
    if not isinstance(names, list):
        raise invalid("Invalid request.\n\nFor 'properties/labels', value is not an array.")
    found = []
    for name in names:
        text = name.get("name") if isinstance(name, dict) else name
        if not isinstance(text, str) or not text:
            raise invalid("Validation Failed", [{"resource": "Label", "code": "invalid", "field": "name"}])
        label = repo.labels.get(text.lower())
        if label is None:
            label = repo.labels[text.lower()] = Label(next_id(), text)
        found.append(label)
    return found


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise invalid(f"Invalid since: {text}") from None


@route("GET", "/repos/{owner}/{repo}/issues")
def list_issues(ctx: Ctx) -> Answer:
    repo, q = ctx.repo, ctx.request.query
    state = q.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise invalid(f"Invalid state: {state}")
    wanted = {n.strip().lower() for n in q.get("labels", "").split(",") if n.strip()}
    since = _since(q.get("since"))
    chosen = [i for i in repo.issues.values()
              if (state == "all" or i.state == state) and wanted <= {lab.name.lower() for lab in i.labels}
              and (since is None or i.updated >= since) and (not q.get("creator") or q["creator"] == i.user)
              and (not q.get("assignee") or q["assignee"] in i.assignees)]
    sort = q.get("sort", "created")
    key = {"created": lambda i: (i.created, i.number), "updated": lambda i: (i.updated, i.number),
           "comments": lambda i: (len(i.comments), i.number)}.get(sort)
    if key is None:
        raise invalid(f"Invalid sort: {sort}")
    chosen.sort(key=key, reverse=q.get("direction", "desc") != "asc")
    return page(ctx, [render.issue(ctx.urls, repo, i) for i in chosen])


@route("GET", "/repos/{owner}/{repo}/issues/{number}")
def get_issue(ctx: Ctx) -> Answer:
    return Answer(200, render.issue(ctx.urls, ctx.repo, _issue(ctx)))


@route("POST", "/repos/{owner}/{repo}/issues")
def create_issue(ctx: Ctx) -> Answer:
    repo, body = ctx.repo, ctx.json()
    title = body.get("title")
    if title in (None, ""):
        raise missing_field("Issue", "title")
    if not isinstance(title, (str, int)):
        raise invalid("Invalid request.\n\nFor 'properties/title', value is not a string or integer.")
    issue = Issue(next_id(), repo.next_number(), str(title), body.get("body"), ctx.identity.login, ctx.now, ctx.now,
                  labels=labels_for(repo, body.get("labels") or []), assignees=list(body.get("assignees") or []))
    repo.issues[issue.number] = issue
    location = f"{ctx.urls.repo(repo)}/issues/{issue.number}"
    return Answer(201, render.issue(ctx.urls, repo, issue), {"Location": location})


@route("PATCH", "/repos/{owner}/{repo}/issues/{number}")
def update_issue(ctx: Ctx) -> Answer:
    repo, issue, body = ctx.repo, _issue(ctx), ctx.json()
    if "title" in body:
        if not body["title"]:
            raise missing_field("Issue", "title")
        issue.title = str(body["title"])
    if "body" in body:
        issue.body = body["body"]
    if "labels" in body:
        issue.labels = labels_for(repo, body["labels"] or [])
    if "assignees" in body:
        issue.assignees = list(body["assignees"] or [])
    if "state" in body:
        _set_state(ctx, issue, body["state"], body.get("state_reason"))
    issue.updated = ctx.now
    return Answer(200, render.issue(ctx.urls, repo, issue))


def _set_state(ctx: Ctx, issue: Issue, state: object, reason: object) -> None:
    if state not in ("open", "closed"):
        raise invalid("Validation Failed", [{"resource": "Issue", "code": "invalid", "field": "state"}])
    if state == "closed" and issue.state != "closed":
        issue.closed, issue.state_reason = ctx.now, reason or "completed"
    elif state == "open" and issue.state != "open":
        issue.closed, issue.state_reason = None, "reopened"
    issue.state = state


@route("POST", "/repos/{owner}/{repo}/issues/{number}/labels")
def add_labels(ctx: Ctx) -> Answer:
    repo, issue, body = ctx.repo, _issue(ctx), ctx.json()
    names = body.get("labels", []) if isinstance(body, dict) else body
    for label in labels_for(repo, names):
        if label not in issue.labels:
            issue.labels.append(label)
    issue.updated = ctx.now
    return Answer(200, [render.label(ctx.urls, repo, lab) for lab in issue.labels])


@route("GET", "/repos/{owner}/{repo}/issues/{number}/comments")
def list_comments(ctx: Ctx) -> Answer:
    repo, issue = ctx.repo, _issue(ctx)
    since = _since(ctx.query("since"))
    return page(ctx, [render.comment(ctx.urls, repo, c) for c in issue.comments if since is None or c.updated >= since])


@route("POST", "/repos/{owner}/{repo}/issues/{number}/comments")
def create_comment(ctx: Ctx) -> Answer:
    repo, issue, body = ctx.repo, _issue(ctx), ctx.json()
    text = body.get("body")
    if not isinstance(text, str) or not text:
        raise missing_field("IssueComment", "body")
    comment = Comment(next_id(), issue.number, text, ctx.identity.login, ctx.now, ctx.now)
    issue.comments.append(comment)
    issue.updated = ctx.now
    return Answer(201, render.comment(ctx.urls, repo, comment),
                  {"Location": f"{ctx.urls.repo(repo)}/issues/comments/{comment.id}"})


def _comment(ctx: Ctx) -> Comment:
    for issue in ctx.repo.issues.values():
        for comment in issue.comments:
            if str(comment.id) == ctx.params["comment"]:
                return comment
    raise not_found()


@route("GET", "/repos/{owner}/{repo}/issues/comments")
def list_repo_comments(ctx: Ctx) -> Answer:
    repo = ctx.repo
    comments = sorted((c for i in repo.issues.values() for c in i.comments), key=lambda c: c.id)
    return page(ctx, [render.comment(ctx.urls, repo, c) for c in comments])


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment}")
def get_comment(ctx: Ctx) -> Answer:
    return Answer(200, render.comment(ctx.urls, ctx.repo, _comment(ctx)))


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment}")
def update_comment(ctx: Ctx) -> Answer:
    comment, body = _comment(ctx), ctx.json()
    if not isinstance(body.get("body"), str) or not body["body"]:
        raise missing_field("IssueComment", "body")
    comment.body, comment.updated = body["body"], ctx.now
    return Answer(200, render.comment(ctx.urls, ctx.repo, comment))


@route("GET", "/repos/{owner}/{repo}/labels")
def list_labels(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [render.label(ctx.urls, repo, lab) for lab in repo.labels.values()])


@route("GET", "/search/issues")
def search_issues(ctx: Ctx) -> Answer:
    query = ctx.query("q")
    if not query:
        raise invalid("Validation Failed", [{"resource": "Search", "field": "q", "code": "missing"}])
    terms = query.split()
    repos = [ctx.gh.repo(t[5:]) for t in terms if t.startswith("repo:")]
    pool = [(r, i) for r in (repos or ctx.gh.repos()) if r is not None for i in r.issues.values()]
    found = [(r, i) for r, i in pool if _matches(i, terms)]
    found.sort(key=lambda ri: ri[1].created, reverse=True)
    answer = page(ctx, [render.issue(ctx.urls, r, i) | {"score": 1.0} for r, i in found], "items")
    answer.body["incomplete_results"] = False
    return answer


def _matches(issue: Issue, terms: list[str]) -> bool:
    where = {t[3:] for t in terms if t.startswith("in:")} or {"title", "body"}
    text = " ".join(filter(None, [issue.title if "title" in where else "",
                                  issue.body if "body" in where else "",
                                  " ".join(c.body for c in issue.comments) if "comments" in where else ""])).lower()
    for term in terms:
        key, _, value = term.partition(":")
        if term.startswith(("repo:", "in:")):
            continue
        if key == "is" and value in ("issue", "pr", "pull-request", "open", "closed"):
            ok = {"issue": issue.pull is None, "pr": issue.pull is not None, "pull-request": issue.pull is not None,
                  "open": issue.state == "open", "closed": issue.state == "closed"}[value]
        elif key in ("type",) and value in ("issue", "pr"):
            ok = (issue.pull is None) == (value == "issue")
        elif key == "state":
            ok = issue.state == value
        elif key == "label":
            ok = value.strip('"').lower() in {lab.name.lower() for lab in issue.labels}
        else:
            ok = term.strip('"').lower() in text
        if not ok:
            return False
    return True


@route("GET", "/repos/{owner}/{repo}/pulls")
def list_pulls(ctx: Ctx) -> Answer:
    repo = ctx.repo
    state = ctx.query("state", "open")
    pulls = [i for i in sorted(repo.issues.values(), key=lambda i: i.number, reverse=True)
             if i.pull is not None and state in ("all", i.state)]
    return page(ctx, [pull(ctx, repo, i) for i in pulls])


@route("GET", "/repos/{owner}/{repo}/pulls/{number}")
def get_pull(ctx: Ctx) -> Answer:
    issue = _issue(ctx)
    if issue.pull is None:
        raise not_found()
    return Answer(200, pull(ctx, ctx.repo, issue))


def pull(ctx: Ctx, repo: Repo, issue: Issue) -> dict:
    body = render.issue(ctx.urls, repo, issue)
    url = f"{ctx.urls.repo(repo)}/pulls/{issue.number}"
    ref = {"repo": render.repository(ctx.urls, repo, full=False), "user": render.user(ctx.urls, repo.owner)}
    head, base = issue.pull["head"], issue.pull["base"]
    body.pop("pull_request", None)
    body.update({"url": url, "html_url": body["html_url"], "issue_url": f"{ctx.urls.repo(repo)}/issues/{issue.number}",
                 "merged": False, "merged_at": None, "mergeable": True, "mergeable_state": "clean", "draft": False,
                 "merge_commit_sha": None, "merged_by": None, "rebaseable": True, "maintainer_can_modify": False,
                 "requested_reviewers": [], "requested_teams": [], "auto_merge": None,
                 "commits_url": f"{url}/commits", "review_comments_url": f"{url}/comments",
                 "review_comment_url": f"{ctx.urls.repo(repo)}/pulls/comments{{/number}}",
                 "statuses_url": f"{ctx.urls.repo(repo)}/statuses/{repo.branches.get(head, '')}",
                 "diff_url": f"{body['html_url']}.diff", "patch_url": f"{body['html_url']}.patch",
                 "head": {**ref, "label": f"{repo.owner}:{head}", "ref": head, "sha": repo.branches.get(head, "")},
                 "base": {**ref, "label": f"{repo.owner}:{base}", "ref": base, "sha": repo.branches.get(base, "")}})
    return body

