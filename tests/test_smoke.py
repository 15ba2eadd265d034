"""End to end through the real app: subscribe with the handshake, publish, receive, verify."""

from __future__ import annotations

from standardwebhooks import Webhook

from tests.conftest import Receiver


async def test_subscribe_publish_deliver_verify(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, topics=["contact.*"])
    assert hook["secret"].startswith("whsec_")
    assert len(receiver.handshakes) == 1
    published = await gw.publish(data={"id": 17})
    assert published["deliveries"] == 1
    await receiver.wait_for(1)
    got = receiver.deliveries[0]
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["data"] == {"id": 17}
    assert payload["sequence"] == 1
    assert got.headers["webhook-id"] == published["id"]
