"""Receivers that share their state in PostgreSQL, as replicas behind one Service do, and as a restarted one does.

Real pieces: the session's PostgreSQL, the session's Prefect test server with prefect.yaml's trigger armed
(so an accepted alert becomes a real flow run), real HTTP to real `ReceiverServer`s, each with its own
`PostgresState` (its own connection, so the advisory locks and transactions are PostgreSQL's, not ours).
"""
from __future__ import annotations

import json
import threading
from collections import Counter

import httpx
import pytest

from deployments.dispatch import PENDING_SECONDS
from deployments.receiver_state import PostgresState, StateUnavailable

from .receiver_helpers import (TOKEN, alertmanager, api, armed, crash_looping, estate, events_for,  # noqa: F401
                               outcomes, post, rollout_stuck, settle, start_receiver, stub_api, wait_run)

STORM = 10          # deliveries per alert in the storm (20 at once over two receivers)


@pytest.fixture
def shared(start_receiver, postgres_database):
    """start(api_url) -> (url, state): a receiver whose state is in the test's PostgreSQL database."""
    states: list[PostgresState] = []

    def start(api_url: str) -> tuple[str, PostgresState]:
        state = PostgresState(postgres_database, pending_seconds=PENDING_SECONDS, horizon=600)
        states.append(state)
        url, _ = start_receiver(api_url, state=state)
        return url, state
    yield start
    for state in states:
        state.close()


def _storm(urls: list[str], payloads: list[dict]) -> list[tuple[int, str]]:
    """Every payload STORM times, spread over the receivers, all sent at once; (status, outcome) of each."""
    bodies = [json.dumps(p).encode() for p in payloads]
    jobs = [(urls[i % len(urls)], bodies[i % len(bodies)]) for i in range(STORM * len(bodies))]
    answers: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def send(index: int, url: str, body: bytes) -> None:
        barrier.wait()
        response = httpx.post(f"{url}/alerts/alertmanager", content=body, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        answers[index] = (response.status_code, response.json()["outcomes"][0]["outcome"])
    threads = [threading.Thread(target=send, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def test_two_receivers_sharing_postgres_start_one_run_for_an_alert_storm_on_one_object(armed, shared, api, estate):
    """Two alerts on one Deployment (a crash loop and a stuck rollout), each delivered STORM times, spread over
    two receivers at once: one run starts; every other delivery is a duplicate or held in flight (503)."""
    (first, _), (second, _) = shared(api), shared(api)
    svc = estate.fresh()
    crash, stuck = crash_looping(svc), rollout_stuck(svc)
    answers = _storm([first, second], [alertmanager(crash), alertmanager(stuck)])
    counted = Counter(answers)
    assert counted[(202, "started")] == 1, counted
    assert set(counted) <= {(202, "started"), (202, "duplicate"), (503, "in-flight")}, counted
    started = next(p for p in (crash, stuck) if any(o == "started" for _, o in answers[(p is stuck)::2]))
    run = wait_run(api, started["fingerprint"])                 # the one run exists...
    settle(api)                                                  # ...and every event is stored by now
    events = events_for(api, crash["fingerprint"]) + events_for(api, stuck["fingerprint"])
    assert len(events) == 1 and run["parameters"]["service"] == svc.name


def test_a_restarted_receiver_still_deduplicates_and_sees_the_run_it_requested(shared, stub_api, estate):
    """The Prefect API here is a stand-in where no run ever appears, so only the receiver's own state can
    say that a run was requested: the restarted receiver must read it from PostgreSQL."""
    _, api_url = stub_api
    url, state = shared(api_url)
    svc = estate.fresh()
    firing, other = crash_looping(svc), rollout_stuck(svc)
    assert outcomes(post(url, alertmanager(firing))) == ["started"]
    state.close()                                                # the receiver dies; a new one starts
    restarted, _ = shared(api_url)
    assert outcomes(post(restarted, alertmanager(firing))) == ["duplicate"]
    held = post(restarted, alertmanager(other))
    assert held.status_code == 503 and outcomes(held) == ["in-flight"]
    assert "has not appeared yet" in held.json()["outcomes"][0]["reason"]
    fresh = crash_looping(estate.fresh())                        # the positive on the same path: a new object
    assert outcomes(post(restarted, alertmanager(fresh))) == ["started"]


def test_memory_state_is_what_a_restart_forgets(start_receiver, stub_api, estate):
    """Why the shared store exists: the default (in-memory) receiver, restarted, starts the same alert again."""
    _, api_url = stub_api
    svc = estate.fresh()
    firing = crash_looping(svc)
    first, _ = start_receiver(api_url)
    assert outcomes(post(first, alertmanager(firing))) == ["started"]
    assert outcomes(post(first, alertmanager(firing))) == ["duplicate"]
    restarted, _ = start_receiver(api_url)
    assert outcomes(post(restarted, alertmanager(firing))) == ["started"]


def test_an_unreachable_state_store_is_503_and_posts_nothing(shared, stub_api, estate, postgres):
    stub, api_url = stub_api
    url, state = shared(api_url)
    assert outcomes(post(url, alertmanager(crash_looping(estate.fresh())))) == ["started"]
    state.url = postgres.url("no_such_database")                 # the next connection fails
    state._call_quietly(state._drop_connection())
    posted = len([path for path, _, _ in stub.requests if path == "/api/events"])
    answer = post(url, alertmanager(crash_looping(estate.fresh())))
    assert answer.status_code == 503 and "shared state" in answer.json()["error"]
    assert postgres.password not in answer.text
    assert len([path for path, _, _ in stub.requests if path == "/api/events"]) == posted
    with pytest.raises(StateUnavailable):
        with state.session(["x"]):
            pass
