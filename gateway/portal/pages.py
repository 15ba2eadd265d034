"""The portal's pages for hooks and deliveries: each reads and acts through the API's own
service functions (gateway.api.hooks, gateway.api.deliveries), so a subscriber here meets the
same account checks and validation rules as over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api import deliveries as delivery_api
from gateway.api import hooks as hook_api
from gateway.api import recovery
from gateway.api.common import CLOCK, STORAGE, principal
from gateway.config import TOPIC_NAME
from gateway.errors import Unprocessable
from gateway.models import DeliveryStatus, Hook, HookStatus, Role
from gateway.portal import stats
from gateway.portal.charts import bars
from gateway.portal.layer import FORM, Handler, chart, field, redirect, render

PAGE = 50
DONE = {  # what a redirect's ?done= says; fixed texts, so nothing a visitor typed is reflected
    "paused": "The hook is paused: deliveries wait until it is resumed.",
    "resumed": "The hook is active again; what waited is being delivered.",
    "saved": "Changes saved.",
    "deleted": "The hook was deleted; its waiting deliveries were cancelled.",
    "retried": "The delivery will be tried again now.",
    "tested": "A test event was sent to this hook; it shows in the deliveries below.",
}


def _done(request: web.Request) -> str | None:
    done = request.query.get("done", "")
    if done == "recovered":
        n = request.query.get("n", "")
        count = int(n) if n.isdigit() and len(n) < 10 else 0
        return f"{count} failed deliveries since that time are being sent again."
    return DONE.get(done)


def _account_filter(request: web.Request) -> str | None:
    p = principal(request)
    if p.role is Role.SUBSCRIBER:
        return p.account
    return request.query.get("account") or None


def _cursor(request: web.Request) -> str:
    """A page cursor (a hook or delivery id) from the address; anything else starts over."""
    raw = request.query.get("after", "")
    return raw if len(raw) <= 40 and raw.replace("_", "").isalnum() else ""


def hook_name(hook: Hook) -> str:
    return hook.description or hook.target_url


async def hook_list(request: web.Request) -> web.Response:
    storage = request.app[STORAGE]
    now = request.app[CLOCK].now()
    account = _account_filter(request)
    hooks, last = await storage.list_hooks(account, PAGE, _cursor(request))
    ids = [h.id for h in hooks]
    health = await stats.hook_health(storage, ids, now)
    errors = await stats.last_errors(storage, ids, now)
    ctx: dict[str, Any] = {}
    if principal(request).role is Role.ADMIN:
        ctx = {
            "accounts": await stats.accounts(storage),
            "troubled": await stats.troubled_hooks(storage),
            "backlog": await stats.backlog_by_host(storage, now),
            "per_minute": chart(bars(await stats.per_minute(storage, now),
                                     title="Deliveries per minute, last hour")),
        }
    return render(request, "hooks.html", hooks=hooks, account=account, name=hook_name,
                  charts={h: chart(bars(b, title="Delivery health, last 24 hours"))
                          for h, b in health.items()},
                  errors=errors, next_after=last, done=_done(request), **ctx)


async def _hook(request: web.Request) -> Hook:
    return await hook_api.visible_hook(request, request.match_info["id"])


async def hook_page(request: web.Request) -> web.Response:
    hook = await _hook(request)
    return await _hook_page(request, hook)


async def _hook_page(request: web.Request, hook: Hook, status: int = 200,
                     **extra: Any) -> web.Response:
    extra.setdefault("edit_error", None)
    extra.setdefault("recover_error", None)
    storage = request.app[STORAGE]
    now = request.app[CLOCK].now()
    wanted = request.query.get("status")
    try:
        status_filter = DeliveryStatus(wanted) if wanted else None
    except ValueError:
        status_filter = None
    items, last = await storage.list_deliveries(hook.id, status_filter, PAGE,
                                                _cursor(request) or None)
    health = (await stats.hook_health(storage, [hook.id], now))[hook.id]
    error = (await stats.last_errors(storage, [hook.id], now)).get(hook.id)
    return render(request, "hook.html", status, hook=hook, name=hook_name(hook),
                  deliveries=items, next_after=last, status_filter=status_filter,
                  statuses=list(DeliveryStatus), chart=chart(bars(
                      health, title="Delivery health, last 24 hours")),
                  last_error=error, done=_done(request), since_default=_since_default(now),
                  **extra)


def _since_default(now: float) -> str:
    return datetime.fromtimestamp(now - 86400, UTC).strftime("%Y-%m-%dT%H:%M")


def _topics(request: web.Request) -> list[str]:
    chosen = request[FORM].getall("topics", [])
    extra = field("more_topics", request).replace(",", " ").split()
    return [*chosen, *extra]


async def new_hook_form(request: web.Request) -> web.Response:
    topics = await request.app[STORAGE].list_topics()
    return render(request, "new_hook.html", topics=topics, values={}, error=None,
                  account=_account_filter(request))


async def create_hook(request: web.Request) -> web.Response:
    body: dict[str, Any] = {
        "target_url": field("target_url", request).strip(),
        "topics": _topics(request),
        "description": field("description", request),
        "payload": field("payload", request) or "full",
        "ordered": field("ordered", request) == "on",
    }
    if principal(request).role is Role.ADMIN:
        body["account"] = field("account", request).strip() or None
    try:
        made = await hook_api.create(request, body)
    except Unprocessable as exc:
        topics = await request.app[STORAGE].list_topics()
        return render(request, "new_hook.html", 422, topics=topics, values=body,
                      error=exc.detail, account=_account_filter(request))
    return render(request, "created.html", 201, hook=made.hook, name=hook_name(made.hook),
                  secret=made.secret, handshake=made.handshake_status)


async def edit_hook(request: web.Request) -> web.Response:
    hook = await _hook(request)
    body: dict[str, Any] = {"description": field("description", request),
                            "topics": _topics(request)}
    target = field("target_url", request).strip()
    if target and target != hook.target_url:
        body["target_url"] = target
    try:
        await hook_api.change(request, hook, body)
    except Unprocessable as exc:
        return await _hook_page(request, hook, 422, edit_error=exc.detail)
    return redirect(f"/portal/hooks/{hook.id}?done=saved")


async def _set_status(request: web.Request, status: HookStatus, done: str) -> web.Response:
    hook = await _hook(request)
    await hook_api.change(request, hook, {"status": status.value})
    return redirect(f"/portal/hooks/{hook.id}?done={done}")


async def pause_hook(request: web.Request) -> web.Response:
    return await _set_status(request, HookStatus.PAUSED, "paused")


async def resume_hook(request: web.Request) -> web.Response:
    return await _set_status(request, HookStatus.ACTIVE, "resumed")


async def delete_hook(request: web.Request) -> web.Response:
    await hook_api.remove(request, await _hook(request))
    return redirect("/portal/?done=deleted")


async def rotate_secret(request: web.Request) -> web.Response:
    hook = await _hook(request)
    secret = await hook_api.rotate(request, hook)
    return render(request, "secret.html", hook=hook, name=hook_name(hook), secret=secret)


async def send_test(request: web.Request) -> web.Response:
    hook = await _hook(request)
    await recovery.test_hook(request, hook)
    return redirect(f"/portal/hooks/{hook.id}?done=tested")


async def recover(request: web.Request) -> web.Response:
    hook = await _hook(request)
    since = field("since", request).strip()
    # A datetime-local field gives "YYYY-MM-DDTHH:MM" (or with seconds), read as UTC.
    if len(since) == 16:
        since += ":00"
    try:
        n = await recovery.recover_hook(request, hook, {"since": f"{since}Z"})
    except Unprocessable as exc:
        return await _hook_page(request, hook, 422, recover_error=exc.detail)
    return redirect(f"/portal/hooks/{hook.id}?done=recovered&n={n}")


async def events_page(request: web.Request) -> web.Response:
    account = _account_filter(request)
    topic = request.query.get("topic") or None
    if topic is not None and not TOPIC_NAME.match(topic):
        topic = None
    storage = request.app[STORAGE]
    items, last = await storage.list_events(account, topic, None, None, PAGE,
                                            _cursor(request) or None)
    counts = await storage.delivery_counts([e.id for e in items])
    return render(request, "events.html", events=[
        (e, counts[e.id], _excerpt(e.data_json)) for e in items], account=account,
        topic=topic, next_after=last)


def _excerpt(data: bytes, limit: int = 2000) -> str:
    text = data.decode(errors="replace")
    return text if len(text) <= limit else f"{text[:limit]}… ({len(data):,} bytes in all)"


async def delivery_page(request: web.Request) -> web.Response:
    delivery, attempts = await delivery_api.visible_delivery(request, request.match_info["id"])
    storage = request.app[STORAGE]
    hook = await storage.get_hook(delivery.hook_id)
    found = await storage.get_event(delivery.event_id)
    data = None
    if found is not None and principal(request).can_see(found[0].account):
        data = found[0].data_json.decode()
    return render(request, "delivery.html", delivery=delivery, attempts=list(reversed(attempts)),
                  hook=hook, name=hook_name(hook) if hook else delivery.hook_id, data=data,
                  done=_done(request))


async def retry_delivery(request: web.Request) -> web.Response:
    delivery, _ = await delivery_api.visible_delivery(request, request.match_info["id"])
    await delivery_api.retry(request, delivery)
    back = field("back", request)
    if back == "delivery":
        return redirect(f"/portal/deliveries/{delivery.id}?done=retried")
    return redirect(f"/portal/hooks/{delivery.hook_id}?done=retried")


def add_routes(app: web.Application, wrap: Callable[[Handler], Handler]) -> None:
    r = app.router
    r.add_get("/portal/", wrap(hook_list))
    r.add_get("/portal/hooks/new", wrap(new_hook_form))
    r.add_post("/portal/hooks", wrap(create_hook))
    r.add_get("/portal/hooks/{id}", wrap(hook_page))
    r.add_post("/portal/hooks/{id}/edit", wrap(edit_hook))
    r.add_post("/portal/hooks/{id}/pause", wrap(pause_hook))
    r.add_post("/portal/hooks/{id}/resume", wrap(resume_hook))
    r.add_post("/portal/hooks/{id}/delete", wrap(delete_hook))
    r.add_post("/portal/hooks/{id}/rotate-secret", wrap(rotate_secret))
    r.add_post("/portal/hooks/{id}/test", wrap(send_test))
    r.add_post("/portal/hooks/{id}/recover", wrap(recover))
    r.add_get("/portal/events", wrap(events_page))
    r.add_get("/portal/deliveries/{id}", wrap(delivery_page))
    r.add_post("/portal/deliveries/{id}/retry", wrap(retry_delivery))

