"""Deliveries as senders make them: bursts of simultaneous connections, and signed (timestamped) requests."""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time

from .receiver_helpers import (HMAC_KEY, TOKEN, alertmanager, api, armed, crash_looping, estate,  # noqa: F401
                               events_for, outcomes, post, receiver, settle, signed, start_receiver, wait_run)

BURST = 200


def _deliver(url: str, body: bytes, barrier: threading.Barrier, answers: list, index: int) -> None:
    """One delivery on its own connection, opened when every other thread is ready to open its own."""
    host, port = url.removeprefix("http://").split(":")
    request = (f"POST /alerts/alertmanager HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    barrier.wait()
    try:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request + body)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        answers[index] = (int(head.split()[1]), json.loads(payload))
    except OSError as exc:           # ConnectionResetError, refused, timeout: no HTTP answer
        answers[index] = (type(exc).__name__, None)


def test_a_burst_of_identical_deliveries_each_gets_an_answer_and_starts_one_run(armed, receiver, api, estate):
    firing = crash_looping(estate.fresh())
    body = json.dumps(alertmanager(firing)).encode()
    answers: list = [None] * BURST
    barrier = threading.Barrier(BURST)
    threads = [threading.Thread(target=_deliver, args=(receiver, body, barrier, answers, i)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = [status for status, _ in answers]
    assert statuses == [202] * BURST, {s: statuses.count(s) for s in set(statuses)}
    decided = sorted(document["outcomes"][0]["outcome"] for _, document in answers)
    assert decided == ["duplicate"] * (BURST - 1) + ["started"]
    run = wait_run(api, firing["fingerprint"])
    settle(api)
    assert len(events_for(api, firing["fingerprint"])) == 1 and run["parameters"]["service"]


def test_a_fresh_timestamped_signature_is_accepted(receiver, estate):
    body = json.dumps(alertmanager(crash_looping(estate.fresh()))).encode()
    response = post(receiver, body, token=None, headers=signed(body))
    assert response.status_code == 202 and outcomes(response) == ["started"]


def test_stale_future_replayed_or_unsigned_deliveries_are_401_and_post_no_event(receiver, api, estate, caplog):
    """A captured signed request is refused once its timestamp is over 5 minutes old, and so are the old
    body-only signatures (replayable forever). Each case is the fresh, valid request altered in one way."""
    import hashlib
    import hmac

    def case(alter):
        firing = crash_looping(estate.fresh())
        body = json.dumps(alertmanager(firing)).encode()
        return firing["fingerprint"], body, alter(body, signed(body))

    cases = {
        "stale: signed 301 s ago": case(lambda b, h: signed(b, at=time.time() - 301)),
        "from the future: 120 s ahead": case(lambda b, h: signed(b, at=time.time() + 120)),
        "timestamp changed after signing": case(lambda b, h: {**h, "X-Runbooks-Timestamp": str(int(time.time()) - 1)}),
        "body changed after signing": case(lambda b, h: signed(b + b" ")),
        "no timestamp": case(lambda b, h: {"X-Runbooks-Signature": h["X-Runbooks-Signature"]}),
        "old body-only scheme": case(lambda b, h: {
            "X-Runbooks-Signature": "sha256=" + hmac.new(HMAC_KEY.encode(), b, hashlib.sha256).hexdigest()}),
        "wrong key": case(lambda b, h: signed(b, key="another-key-0123456789abcdef")),
        "wrong token": case(lambda b, h: {"Authorization": "Bearer wrong-token-0123456789"}),
        "not bearer": case(lambda b, h: {"Authorization": f"Basic {TOKEN}"}),
        "nothing": case(lambda b, h: {}),
    }
    with caplog.at_level(logging.DEBUG):
        answers = {name: post(receiver, body, token=None, headers=headers)
                   for name, (_, body, headers) in cases.items()}
    assert {name: (r.status_code, r.headers.get("WWW-Authenticate")) for name, r in answers.items()} == {
        name: (401, "Bearer") for name in cases}
    assert re.search(r"is 30\ds in the past", answers["stale: signed 301 s ago"].json()["error"])
    assert "in the future" in answers["from the future: 120 s ahead"].json()["error"]
    assert "X-Runbooks-Timestamp" in answers["old body-only scheme"].json()["error"]
    settle(api)
    assert {name: events_for(api, fingerprint) for name, (fingerprint, _, _) in cases.items()} == {
        name: [] for name in cases}
    assert TOKEN not in caplog.text and HMAC_KEY not in caplog.text
