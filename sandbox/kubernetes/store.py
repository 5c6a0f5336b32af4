"""In-memory object store with the API server's semantics: resourceVersion, uid, generation, watch, garbage collection.

Stored objects are never mutated after they are stored: every write stores a new dict, so readers may
hold a reference without copying. Callers that want to change an object take `copy_of()` first.
"""
from __future__ import annotations

import collections
import copy
import datetime as dt
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from . import errors
from .resources import BY_KEY, ResourceType

HISTORY_SIZE = 50_000


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def copy_of(obj: dict) -> dict:
    return copy.deepcopy(obj)


@dataclass(frozen=True)
class WatchEvent:
    type: str                 # ADDED, MODIFIED, DELETED
    resource: ResourceType
    obj: dict
    previous: dict | None
    rv: int


Matcher = Callable[[dict], bool]


class Watcher:
    """One watch stream's subscription; events matching its namespace and selector are queued."""

    def __init__(self, store: "Store", resource: ResourceType, namespace: str | None, matches: Matcher) -> None:
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.matches = matches
        self.events: queue.Queue[tuple[str, dict] | None] = queue.Queue()
        self.closed = False

    def offer(self, event: WatchEvent) -> None:
        if event.resource is not self.resource:
            return
        if self.namespace and event.obj.get("metadata", {}).get("namespace") != self.namespace:
            return
        now = self.matches(event.obj)
        before = event.previous is not None and self.matches(event.previous)
        if event.type == "MODIFIED":
            if now and before:
                self.events.put(("MODIFIED", event.obj))
            elif now:
                self.events.put(("ADDED", event.obj))       # started matching the selector
            elif before:                                    # stopped matching the selector: like the watch
                last = {**event.previous, "metadata": {     # cache, the last matching state at this version
                    **event.previous["metadata"], "resourceVersion": str(event.rv)}}
                self.events.put(("DELETED", last))
        elif now:
            self.events.put((event.type, event.obj))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._remove_watcher(self)
            self.events.put(None)


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rv = 0
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {key: {} for key in BY_KEY}
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=HISTORY_SIZE)
        self._watchers: list[Watcher] = []

    # -- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict:
        """The stored object (do not mutate it), or 404."""
        obj = self._objects[resource.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(resource.plural, name, resource.group)
        return obj

    def find(self, resource: ResourceType, namespace: str | None, name: str) -> dict | None:
        return self._objects[resource.key].get((namespace or "", name))

    def items(self, resource: ResourceType, namespace: str | None = None) -> list[dict]:
        """Stored objects of a type, sorted by namespace and name as the real server lists them."""
        with self.lock:
            bucket = self._objects[resource.key]
            keys = sorted(k for k in bucket if not namespace or k[0] == namespace)
            return [bucket[k] for k in keys]

    def list(self, resource: ResourceType, namespace: str | None = None,
             matches: Matcher | None = None) -> tuple[list[dict], int]:
        with self.lock:
            objs = self.items(resource, namespace)
            if matches is not None:
                objs = [o for o in objs if matches(o)]
            return objs, self._rv

    # -- writes --------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _publish(self, kind: str, resource: ResourceType, obj: dict, previous: dict | None, rv: int) -> None:
        event = WatchEvent(kind, resource, obj, previous, rv)
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)
        self.changed.notify_all()

    def create(self, resource: ResourceType, obj: dict, *, dry_run: bool = False) -> dict:
        """Store a new object; fills uid, creationTimestamp, resourceVersion and generation."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            namespace = meta.get("namespace", "") if resource.namespaced else ""
            if resource.namespaced and self.find(BY_KEY[("", "namespaces")], None, namespace) is None:
                raise errors.not_found("namespaces", namespace)
            if resource.namespaced and self._terminating(namespace):
                raise errors.ApiError(403, "Forbidden",
                                      f'{resource.plural} "{meta.get("name")}" is forbidden: unable to create new '
                                      f"content in namespace {namespace} because it is being terminated")
            name = meta["name"]
            if (namespace, name) in self._objects[resource.key]:
                raise errors.already_exists(resource.plural, name, resource.group)
            meta["uid"] = meta.get("uid") or str(uuid.uuid4())     # preset only by a strategy (Job selectors)
            meta["creationTimestamp"] = now_rfc3339()
            if resource.generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            meta.pop("deletionTimestamp", None)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return obj
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._objects[resource.key][(namespace, name)] = obj
            self._publish("ADDED", resource, obj, None, rv)
            return obj

    def replace(self, resource: ResourceType, obj: dict, *, dry_run: bool = False) -> dict:
        """Store a new version of an existing object (an update): optimistic concurrency on resourceVersion.

        The caller decides what the new object holds (spec vs status split happens in the API layer);
        this keeps identity fields, checks the precondition and bumps generation when `spec` changed.
        """
        with self.lock:
            meta = obj.setdefault("metadata", {})
            namespace = meta.get("namespace", "") if resource.namespaced else ""
            name = meta.get("name", "")
            old = self.get(resource, namespace, name)
            old_meta = old["metadata"]
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != old_meta["resourceVersion"]:
                raise errors.conflict(resource.plural, name, resource.group)
            for key in ("uid", "creationTimestamp", "deletionTimestamp"):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if not resource.generation:
                meta.pop("generation", None)
            elif "generation" in old_meta:
                bumped = old.get("spec") != obj.get("spec")
                meta["generation"] = old_meta["generation"] + (1 if bumped else 0)
            if old == {**obj, "metadata": {**meta, "resourceVersion": old_meta["resourceVersion"]}}:
                meta["resourceVersion"] = old_meta["resourceVersion"]
                return old                                   # no-op update: no new resourceVersion, no event
            if dry_run:
                meta["resourceVersion"] = old_meta["resourceVersion"]
                return obj
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._objects[resource.key][(namespace, name)] = obj
            self._publish("MODIFIED", resource, obj, old, rv)
            return obj

    def delete(self, resource: ResourceType, namespace: str | None, name: str, *, dry_run: bool = False,
               uid: str | None = None, resource_version: str | None = None, orphan: bool = False) -> dict:
        """Delete an object; dependents (by ownerReferences) go too unless `orphan`."""
        with self.lock:
            old = self.get(resource, namespace, name)
            if uid and old["metadata"]["uid"] != uid:
                raise errors.conflict(resource.plural, name, resource.group,
                                      f"Precondition failed: UID in precondition: {uid}, "
                                      f"UID in object meta: {old['metadata']['uid']}")
            if resource_version and old["metadata"]["resourceVersion"] != resource_version:
                raise errors.conflict(resource.plural, name, resource.group)
            if dry_run:
                return old
            if resource.kind == "Namespace":
                self._delete_namespace_contents(name)
            elif not orphan:
                self._delete_dependents(old["metadata"]["uid"], old["metadata"].get("namespace", ""))
            rv = self._next_rv()
            gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(rv)}}
            del self._objects[resource.key][(namespace or "", name)]
            self._publish("DELETED", resource, gone, old, rv)
            return gone

    def _terminating(self, namespace: str) -> bool:
        ns = self.find(BY_KEY[("", "namespaces")], None, namespace)
        return bool(ns and ns["metadata"].get("deletionTimestamp"))

    def _delete_dependents(self, owner_uid: str, namespace: str) -> None:
        for resource in BY_KEY.values():
            for obj in list(self._objects[resource.key].values()):
                meta = obj["metadata"]
                if namespace and meta.get("namespace", "") not in ("", namespace):
                    continue
                if any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences", ())):
                    self.delete(resource, meta.get("namespace"), meta["name"])

    def _delete_namespace_contents(self, namespace: str) -> None:
        for resource in BY_KEY.values():
            if resource.namespaced:
                for obj in self.items(resource, namespace):
                    if self.find(resource, namespace, obj["metadata"]["name"]) is not None:
                        self.delete(resource, namespace, obj["metadata"]["name"])

    # -- controller helpers --------------------------------------------------------------------

    def mutate(self, resource: ResourceType, namespace: str | None, name: str,
               change: Callable[[dict], dict | None]) -> dict | None:
        """Read-modify-write under the store lock (for controllers): `change` gets a copy and returns
        the new object, or None to write nothing. Returns the stored object, or None if it is gone."""
        with self.lock:
            current = self.find(resource, namespace, name)
            if current is None:
                return None
            updated = change(copy_of(current))
            if updated is None:
                return current
            return self.replace(resource, updated)

    # -- watch ---------------------------------------------------------------------------------

    def watch(self, resource: ResourceType, namespace: str | None, matches: Matcher,
              since: str | None) -> Watcher:
        """Subscribe to changes after resourceVersion `since`.

        `since` None/""/"0": synthetic ADDED events for the current state first, as the real server does.
        A version older than the kept history is 410 Gone ("too old resource version").
        """
        with self.lock:
            watcher = Watcher(self, resource, namespace, matches)
            if not since or since == "0":
                for obj in self.items(resource, namespace):
                    if matches(obj):
                        watcher.events.put(("ADDED", obj))
            else:
                try:
                    start = int(since)
                except ValueError:
                    raise errors.bad_request(f'invalid resource version "{since}"') from None
                oldest = self._history[0].rv if self._history else self._rv + 1
                if start < oldest - 1 and start < self._rv:
                    # The real server accepts the watch and sends the 410 as the stream's only event.
                    expired = errors.ApiError(410, "Expired", f"too old resource version: {start} ({oldest - 1})")
                    watcher.closed = True
                    watcher.events.put(("ERROR", expired.status()))
                    watcher.events.put(None)
                    return watcher
                for event in self._history:
                    if event.rv > start:
                        watcher.offer(event)
            self._watchers.append(watcher)
            return watcher

    def _remove_watcher(self, watcher: Watcher) -> None:
        with self.lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def close_watchers(self) -> None:
        with self.lock:
            for watcher in list(self._watchers):
                watcher.close()

    def wait_for_change(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def all_objects(self) -> Iterator[tuple[ResourceType, dict]]:
        with self.lock:
            for key, bucket in self._objects.items():
                for obj in list(bucket.values()):
                    yield BY_KEY[key], obj


def owned_by(obj: dict, owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences", ()))


def controller_of(obj: dict) -> dict | None:
    return next((ref for ref in obj["metadata"].get("ownerReferences", ()) if ref.get("controller")), None)


def names(objs: Iterable[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]
