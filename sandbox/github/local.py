"""The GitHub stand-in as `runbooks sandbox` runs it: its token, App and port are kept in DIR/github.json, so a
restarted sandbox keeps the address and credentials clients already read from DIR/env; the App's private key is
also written to DIR/github-app.pem for clients that read a key file."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from .demo import seed_demo
from .server import GitHubConfig, GitHubSandbox

KEPT = ("token", "app_id", "installation_id", "app_private_key", "port")


def start_local(directory: Path, *, speed: float = 1.0, demo: bool = True) -> GitHubSandbox:
    state = directory / "github.json"
    saved = json.loads(state.read_text()) if state.exists() else {}
    gh = GitHubSandbox(GitHubConfig(speed=speed, **{key: saved[key] for key in KEPT if key in saved})).start()
    app = gh.app()
    if demo:
        seed_demo(gh)
    directory.mkdir(parents=True, exist_ok=True)
    kept = {"token": gh.config.token, "app_id": app.id, "installation_id": app.installation_id,
            "app_private_key": app.private_key, "port": gh.port}
    _write_private(state, json.dumps(kept, indent=2))
    _write_private(directory / "github-app.pem", app.private_key)
    return gh


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def env_lines(gh: GitHubSandbox, directory: Path) -> list[str]:
    app = gh.app()
    values = {**gh.credentials().env(), "RUNBOOKS_GITHUB_APP_ID": str(app.id),
              "RUNBOOKS_GITHUB_APP_INSTALLATION_ID": str(app.installation_id),
              "RUNBOOKS_GITHUB_APP_PRIVATE_KEY_FILE": str((directory / "github-app.pem").resolve())}
    return [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
