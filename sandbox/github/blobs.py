"""Where log downloads land: GitHub answers a log request with a 302 to a short-lived signed URL on its
results storage (an Azure Blob SAS: `se` expiry, `sig` signature), fetched without the GitHub token. Here that
storage is `/_blobs/...` on the same server; a URL past its expiry, with a bad signature, or sent with an
`Authorization` header gets Azure Storage's 403 XML error."""
from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import time
import urllib.parse
import uuid
import zipfile
from typing import TYPE_CHECKING

from . import actions
from .model import Attempt, Job, Repo, Run

if TYPE_CHECKING:
    from ..common.http import Request

PREFIX = "/_blobs/"


class Blobs:
    def __init__(self, web: callable, lifetime: float = 60.0) -> None:
        self._web = web
        self.lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._content: dict[str, tuple[str, object]] = {}     # path -> (kind, what to render)

    def _sign(self, path: str, expiry: str) -> str:
        return hmac.new(self._key, f"{path}\n{expiry}".encode(), hashlib.sha256).hexdigest()

    def _url(self, path: str) -> str:
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.lifetime))
        query = urllib.parse.urlencode({"sv": "2025-01-05", "spr": "https", "se": expiry, "sr": "b", "sp": "r",
                                        "sig": self._sign(path, expiry)})
        return f"{self._web()}{path}?{query}"

    def job_log_url(self, repo: Repo, run: Run, attempt: Attempt, job: Job) -> str:
        path = f"{PREFIX}actions-results/{uuid.uuid4()}/workflow-job-run-{job.id}/logs/job/job-logs.txt"
        self._content[path] = ("job", (run, attempt, job))
        return self._url(path)

    def run_logs_url(self, repo: Repo, run: Run, attempt: Attempt) -> str:
        path = f"{PREFIX}actions-results/{uuid.uuid4()}/workflow-run-{run.id}/logs/logs_{run.id}.zip"
        self._content[path] = ("run", (run, attempt))
        return self._url(path)

    def serve(self, request: "Request") -> tuple[int, bytes, str]:
        """(status, body, content type) for a blob download."""
        if "authorization" in request.headers:
            return _storage_error(400, "InvalidAuthenticationInfo",
                                  "Authentication information is not given in the correct format. Check the value "
                                  "of Authorization header.")
        found = self._content.get(request.path)
        expiry, sig = request.query.get("se", ""), request.query.get("sig", "")
        if found is None:
            return _storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        if not hmac.compare_digest(sig, self._sign(request.path, expiry)):
            return _storage_error(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure "
                                  "the value of Authorization header is formed correctly including the signature.")
        if time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expiry:
            return _storage_error(403, "AuthenticationFailed", "Server failed to authenticate the request. "
                                  f"Signature not valid in the specified time frame: Expiry [{expiry}]")
        kind, what = found
        now = time.time()
        if kind == "job":
            run, attempt, job = what
            return 200, actions.job_log(run, attempt, job, now).encode(), "text/plain"
        run, attempt = what
        return 200, _zip(run, attempt, now), "application/zip"


def _zip(run: Run, attempt: Attempt, now: float) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, job in enumerate(attempt.jobs):
            if job.conclusion == "skipped":
                continue
            archive.writestr(f"{i}_{job.name}.txt", actions.job_log(run, attempt, job, now))
    return buffer.getvalue()


def _storage_error(status: int, code: str, message: str) -> tuple[int, bytes, str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:{uuid.uuid4()}\nTime:{stamp}</Message></Error>")
    return status, body.encode(), "application/xml"
