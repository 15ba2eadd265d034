"""Tests for gateway.signing: Standard Webhooks v1 signatures, checked by the reference library."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.models import new_secret
from gateway.signing import secret_key, sign, signature_header, verify

BODY = b'{"id":"evt_1","type":"contact.created","data":{"email":"a@b.c","name":"J\xc3\xb8rn"}}'
MSG_ID = "evt_01hzy3r6w8k2d5q7m9n1p3s5t7"


def headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_our_signature_verifies_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    ts = int(time.time())
    sig = signature_header([secret], MSG_ID, ts, BODY)
    assert sig.startswith("v1,")
    assert " " not in sig
    payload = Webhook(secret).verify(BODY, headers(MSG_ID, ts, sig))
    assert payload["data"]["email"] == "a@b.c"
    # Byte for byte what the reference implementation computes.
    from datetime import UTC, datetime

    expected = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(ts, UTC), BODY.decode())
    assert sign(secret, MSG_ID, ts, BODY) == expected


def test_secret_key_is_the_decoded_base64_payload() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    key = secret_key(secret)
    assert len(key) == 32
    assert secret_key(secret.removeprefix("whsec_")) == key


def test_during_rotation_both_signatures_verify_each_with_its_own_secret() -> None:
    new, old, stranger = new_secret(), new_secret(), new_secret()
    ts = int(time.time())
    sig = signature_header([new, old], MSG_ID, ts, BODY)
    parts = sig.split(" ")
    assert len(parts) == 2
    assert parts[0] != parts[1]
    h = headers(MSG_ID, ts, sig)
    assert Webhook(new).verify(BODY, h)["id"] == "evt_1"
    assert Webhook(old).verify(BODY, h)["id"] == "evt_1"
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, h)
    # Each part is the signature of exactly one secret.
    assert verify(new, MSG_ID, ts, BODY, parts[0])
    assert not verify(new, MSG_ID, ts, BODY, parts[1])
    assert verify(old, MSG_ID, ts, BODY, parts[1])
    assert not verify(old, MSG_ID, ts, BODY, parts[0])


def test_verify_accepts_the_genuine_message() -> None:
    secret = new_secret()
    ts = int(time.time())
    assert verify(secret, MSG_ID, ts, BODY, signature_header([secret], MSG_ID, ts, BODY))


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret", "signature", "version"])
def test_verify_rejects_tampering(tamper: str) -> None:
    secret = new_secret()
    ts = int(time.time())
    header = signature_header([secret], MSG_ID, ts, BODY)
    body, msg_id, when, key = BODY, MSG_ID, ts, secret
    if tamper == "body":
        body = BODY.replace(b"a@b.c", b"a@b.d")
    elif tamper == "id":
        msg_id = MSG_ID + "x"
    elif tamper == "timestamp":
        when = ts + 1
    elif tamper == "secret":
        key = new_secret()
    elif tamper == "signature":
        mac = header[3:]
        header = "v1," + ("A" if mac[0] != "A" else "B") + mac[1:]
    elif tamper == "version":
        header = "v2," + header[3:]
    assert not verify(key, msg_id, when, body, header)
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(body, headers(msg_id, when, header))


def test_verify_rejects_empty_and_garbage_headers() -> None:
    secret = new_secret()
    ts = int(time.time())
    assert not verify(secret, MSG_ID, ts, BODY, "")
    assert not verify(secret, MSG_ID, ts, BODY, "v1,not-base64 garbage")


@pytest.mark.parametrize("key_len", [1, 24, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("msg_len", [0, 55, 64, 300, 70000])
def test_hmac_from_cached_pads_equals_the_standard_library(key_len: int, msg_len: int) -> None:
    import base64
    import hashlib
    import hmac
    import os

    from gateway.signing import hmac_sha256

    key, msg = os.urandom(key_len), os.urandom(msg_len)
    secret = "whsec_" + base64.b64encode(key).decode()
    assert hmac_sha256(secret, msg) == hmac.new(key, msg, hashlib.sha256).digest()
    # The cached states are copied, never updated: a second signature is the same.
    assert hmac_sha256(secret, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_verify_refuses_a_truncated_signature() -> None:
    secret = new_secret()
    ts = int(time.time())
    [whole] = signature_header([secret], MSG_ID, ts, BODY).split()
    for cut in (len(whole) - 1, len(whole) // 2, len("v1,") + 1, len("v1,")):
        assert not verify(secret, MSG_ID, ts, BODY, whole[:cut]), cut
    assert not verify(secret, MSG_ID, ts, BODY, whole + "A")
    assert verify(secret, MSG_ID, ts, BODY, whole)


@pytest.mark.parametrize("place", [0, 1, 2])
def test_verify_accepts_a_header_with_several_signatures_one_valid(place: int) -> None:
    secret = new_secret()
    ts = int(time.time())
    [good] = signature_header([secret], MSG_ID, ts, BODY).split()
    others = signature_header([new_secret(), new_secret()], MSG_ID, ts, BODY).split()
    parts = [*others]
    parts.insert(place, good)
    header = " ".join(parts)
    assert verify(secret, MSG_ID, ts, BODY, header)
    # Any other secret, and a header of only the others, fail.
    assert not verify(new_secret(), MSG_ID, ts, BODY, header)
    assert not verify(secret, MSG_ID, ts, BODY, " ".join(others))
    Webhook(secret).verify(BODY, headers(MSG_ID, ts, header))
