"""The OpenAPI 3.1 document served at /openapi.json: one Op per route in OPERATIONS, and the
requests a target receives under `webhooks`. tests/test_openapi.py keeps it valid and in step
with the app's routes. To document a new route, add an Op to OPERATIONS (its schemas, if new,
to gateway/schemas.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from gateway import __version__
from gateway.schemas import (
    AT,
    ATTEMPT_EXAMPLE,
    DELIVERY_EXAMPLE,
    DELIVERY_ID,
    DELIVERY_STATUSES,
    EVENT_EXAMPLE,
    EVENT_ID,
    EVENT_PUBLISH_EXAMPLE,
    HOOK_CREATE_EXAMPLE,
    HOOK_EXAMPLE,
    HOOK_ID,
    KEY_EXAMPLE,
    KEY_ID,
    LATER,
    SCHEMAS,
    SECRET,
    TOPIC_EXAMPLE,
    WEBHOOK_EXAMPLE,
    listing,
    page,
    ref,
)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": ref("Problem")}}}


ERRORS = {
    "400": _problem("The body is not JSON."),
    "401": _problem("Missing or unknown API key."),
    "403": _problem("Known key, wrong role or account."),
    "404": _problem("Not found (or another account's)."),
    "413": _problem("Body or batch too large."),
    "422": _problem("JSON that breaks the rules; `errors` names the fields."),
}
BODY_ERRORS = ("400", "401", "403", "413", "422")


def ok(schema: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    """A JSON response with its schema and an example."""
    return {"description": description,
            "content": {"application/json": {"schema": schema, "example": example}}}


def empty(description: str) -> dict[str, Any]:
    return {"description": description}


def path_param(name: str, example: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}, "example": example}


def query(name: str, schema: dict[str, Any], description: str, example: Any = None
          ) -> dict[str, Any]:
    p = {"name": name, "in": "query", "description": description, "schema": schema}
    if example is not None:
        p["example"] = example
    return p


PAGE = (query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
              "Items per page.", 50),
        query("cursor", {"type": "string"}, "`next_cursor` of the previous page."))
HOOK = path_param("id", HOOK_ID, "The hook's id.")


@dataclass(frozen=True)
class Op:
    """One documented route. `responses` are the successful answers (built with ok() or
    empty()); `errors` name the problem answers from ERRORS it may give."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    responses: dict[str, Any]
    body: dict[str, Any] | None = None
    body_example: Any = None
    params: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ("401", "403")
    public: bool = False

    def document(self) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": self.operation_id, "tags": [self.tag],
                              "summary": self.summary, "description": self.description,
                              "responses": {**self.responses,
                                            **{code: ERRORS[code] for code in self.errors}}}
        if self.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": self.body, "example": self.body_example}}}
        if self.params:
            op["parameters"] = list(self.params)
        if self.public:
            op["security"] = []
        return op


TAGS = [
    {"name": "operations", "description": "Health, readiness, metrics and this document."},
    {"name": "keys", "description": "API keys (admin)."},
    {"name": "topics", "description": "The catalog of event topics."},
    {"name": "hooks", "description": "Subscriptions: where events of which topics go."},
    {"name": "events", "description": "Publishing and reading events."},
    {"name": "deliveries", "description": "One event bound for one hook, and its attempts."},
    {"name": "portal", "description": "Sign-in links to the web portal (admin)."},
]

OPERATIONS: list[Op] = [
    Op("get", "/healthz", "getHealth", "operations", "The process is up.",
       "Answers as long as the process serves HTTP; needs no key.",
       {"200": ok(ref("Health"), "Up.", {"status": "ok"})}, errors=(), public=True),
    Op("get", "/readyz", "getReadiness", "operations",
       "The database answers and the delivery loop runs.",
       "For load balancers and orchestrators: 503 while the gateway cannot do its work.",
       {"200": ok(ref("Readiness"), "Ready.",
                  {"status": "ok", "checks": {"database": "ok", "delivery_loop": "ok"}}),
        "503": ok(ref("Readiness"), "Not ready.",
                  {"status": "unavailable",
                   "checks": {"database": "failing", "delivery_loop": "ok"}})},
       errors=(), public=True),
    Op("get", "/metrics", "getMetrics", "operations", "Prometheus metrics.",
       "Prometheus text format. Needs an admin key unless `security.metrics_public` is set.",
       {"200": {"description": "Prometheus text format.", "content": {"text/plain": {
           "schema": {"type": "string"},
           "example": "# TYPE gateway_build_info gauge\ngateway_build_info{version=\"0.1.0\"} "
                      "1.0\n"}}}}),
    Op("get", "/openapi.json", "getOpenApi", "operations", "This document.",
       "The OpenAPI 3.1 description of the HTTP API and of the requests targets receive.",
       {"200": ok({"type": "object"}, "OK", {"openapi": "3.1.0", "info": {
           "title": "gateway", "version": __version__}})}, errors=(), public=True),

    Op("post", "/v1/keys", "createKey", "keys", "Create an API key.",
       "Admin only. The key is in the answer once and stored only as a hash. A subscriber key "
       "for an account that does not exist creates the account.",
       {"201": ok(ref("KeyCreated"), "Created.",
                  {"id": KEY_ID, "key": "gw_toROD3qh4DBKoNTp6KgtxvDjE5sMNHTCztJeRYXwbK8",
                   "role": "subscriber", "account": "acme"})},
       body=ref("KeyCreate"), body_example={"role": "subscriber", "account": "acme"},
       errors=BODY_ERRORS),
    Op("get", "/v1/keys", "listKeys", "keys", "List API keys.",
       "Admin only. Never shows the keys themselves, only their last four characters.",
       {"200": ok(listing("Key"), "OK", {"data": [KEY_EXAMPLE]})}),
    Op("delete", "/v1/keys/{id}", "revokeKey", "keys", "Revoke a key.",
       "Admin only. Takes effect on the next request made with the key.",
       {"204": empty("Revoked.")}, params=(path_param("id", KEY_ID, "The key's id."),),
       errors=("401", "403", "404")),

    Op("get", "/v1/topics", "listTopics", "topics", "The topic catalog.",
       "Every topic events may be published to and hooks may subscribe to.",
       {"200": ok(listing("Topic"), "OK", {"data": [TOPIC_EXAMPLE]})}, errors=("401",)),
    Op("put", "/v1/topics/{name}", "putTopic", "topics", "Create or update a topic.",
       "Admin only. Names are dotted lowercase words, e.g. `contact.created`.",
       {"200": ok(ref("Topic"), "Updated.", TOPIC_EXAMPLE),
        "201": ok(ref("Topic"), "Created.", TOPIC_EXAMPLE)},
       body=ref("TopicPut"), body_example={"description": "A contact was created."},
       params=(path_param("name", "contact.created", "The topic's name."),),
       errors=BODY_ERRORS),

    Op("post", "/v1/hooks", "createHook", "hooks", "Create a hook.",
       "Unless `security.verify_intent` is off, the gateway first POSTs a handshake to "
       "`target_url` (see the `handshake` webhook), which must echo `X-Hook-Secret`; otherwise "
       "the answer is 422 saying what the target did. The secret is shown on create only.",
       {"201": ok(ref("HookWithSecret"), "Created; `secret` shown once.",
                  {**HOOK_EXAMPLE, "secret": SECRET})},
       body=ref("HookCreate"), body_example=HOOK_CREATE_EXAMPLE, errors=BODY_ERRORS),
    Op("get", "/v1/hooks", "listHooks", "hooks", "List hooks.",
       "A subscriber sees its account's hooks; an admin every account's.",
       {"200": ok(page("Hook"), "OK", {"data": [HOOK_EXAMPLE], "next_cursor": None})},
       params=PAGE, errors=("401", "403", "422")),
    Op("get", "/v1/hooks/{id}", "getHook", "hooks", "One hook.",
       "Another account's hook answers 404, like a missing one.",
       {"200": ok(ref("Hook"), "OK", HOOK_EXAMPLE)}, params=(HOOK,),
       errors=("401", "403", "404")),
    Op("patch", "/v1/hooks/{id}", "updateHook", "hooks", "Change a hook.",
       "A new `target_url` is verified again. `status` pauses (deliveries wait) or resumes a "
       "hook, also a disabled one, whose waiting deliveries are then retried.",
       {"200": ok(ref("Hook"), "OK", {**HOOK_EXAMPLE, "status": "paused"})},
       body=ref("HookPatch"), body_example={"status": "paused"}, params=(HOOK,),
       errors=("400", "401", "403", "404", "413", "422")),
    Op("delete", "/v1/hooks/{id}", "deleteHook", "hooks", "Delete a hook.",
       "Its waiting deliveries are cancelled.", {"204": empty("Deleted.")}, params=(HOOK,),
       errors=("401", "403", "404")),
    Op("post", "/v1/hooks/{id}/rotate-secret", "rotateHookSecret", "hooks", "A new secret.",
       "For 24 hours deliveries carry signatures with both the old and the new secret.",
       {"200": ok(ref("Secret"), "OK", {"secret": SECRET})}, params=(HOOK,),
       errors=("401", "403", "404")),
    Op("get", "/v1/hooks/{id}/deliveries", "listHookDeliveries", "deliveries",
       "A hook's deliveries, newest first.", "Filtered by `status` when given.",
       {"200": ok(page("Delivery"), "OK", {"data": [DELIVERY_EXAMPLE], "next_cursor": None})},
       params=(HOOK, *PAGE, query("status", {"enum": DELIVERY_STATUSES},
                                  "Only deliveries with this status.", "failed")),
       errors=("401", "403", "404", "422")),

    Op("post", "/v1/events", "publishEvents", "events",
       "Publish one event, or a JSON array of events atomically.",
       "Publisher or admin. 202 once the event and its deliveries are stored durably. The same "
       "idempotency key (body or header) for the same account within 24 hours returns the "
       "first answer and stores nothing new. One bad event refuses a whole batch.",
       {"202": ok({"oneOf": [ref("Published"), ref("PublishedBatch")]},
                  "Stored durably with its deliveries.", {"id": EVENT_ID, "deliveries": 1})},
       body={"oneOf": [ref("EventPublish"),
                       {"type": "array", "items": ref("EventPublish"), "minItems": 1}]},
       body_example=EVENT_PUBLISH_EXAMPLE,
       params=({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"},
                "description": "For a single event, in place of `idempotency_key`.",
                "example": "crm-17-created"},),
       errors=BODY_ERRORS),
    Op("get", "/v1/events", "listEvents", "events", "Events, newest first.",
       "A subscriber sees its own account's events, publishers and admins every account's "
       "(`account` narrows). `since` and `until` are RFC 3339 times: [since, until).",
       {"200": ok(page("Event"), "OK", {"data": [EVENT_EXAMPLE], "next_cursor": None})},
       params=(*PAGE, query("topic", {"type": "string"}, "Only this topic.", "contact.created"),
               query("account", {"type": "string"}, "Only this account.", "acme"),
               query("since", {"type": "string", "format": "date-time"},
                     "Created at or after this time.", AT),
               query("until", {"type": "string", "format": "date-time"},
                     "Created before this time.", LATER)),
       errors=("401", "403", "422")),
    Op("get", "/v1/events/{id}", "getEvent", "events", "One event with its delivery counts.",
       "Subscribers see only their account's events.",
       {"200": ok(ref("Event"), "OK", EVENT_EXAMPLE)},
       params=(path_param("id", EVENT_ID, "The event's id."),), errors=("401", "404")),

    Op("get", "/v1/deliveries/{id}", "getDelivery", "deliveries",
       "One delivery with its attempt log.",
       "Each attempt has the status code the target answered, or the error when it did not.",
       {"200": ok(ref("DeliveryWithAttempts"), "OK",
                  {**DELIVERY_EXAMPLE, "attempt_log": [ATTEMPT_EXAMPLE]})},
       params=(path_param("id", DELIVERY_ID, "The delivery's id."),),
       errors=("401", "403", "404")),
    Op("post", "/v1/hooks/{id}/recover", "recoverHookDeliveries", "deliveries",
       "Recover a hook's deliveries since a time.",
       "The hook's deliveries created in [since, until) whose status is in `statuses` (default "
       "failed) become pending with a fresh set of retries, in their original order (an "
       "ordered hook gets them in sequence). Done in small transactions.",
       {"202": ok(ref("Recovered"), "Pending again, durably.", {"deliveries": 12})},
       body=ref("Recover"), body_example={"since": AT, "statuses": ["failed"]},
       params=(HOOK,), errors=("400", "401", "403", "404", "413", "422")),
    Op("post", "/v1/hooks/{id}/test", "sendTestEvent", "hooks", "Send a test event.",
       "Publishes a `gateway.test` event (data: hook_id, message) for this hook alone; it "
       "shows in the hook's delivery log like any other.",
       {"202": ok(ref("Published"), "Stored durably with its one delivery.",
                  {"id": EVENT_ID, "deliveries": 1})},
       params=(HOOK,), errors=("401", "403", "404", "422")),
    Op("post", "/v1/portal/sessions", "createPortalSession", "portal", "A portal sign-in link.",
       "Admin only. The link opens the portal for that account alone until `expires_at`; its "
       "token is stored only as a hash.",
       {"201": ok(ref("PortalSession"), "Created.",
                  {"url": "https://hooks.example.com/portal/sign-in?token=gwp_…",
                   "expires_at": LATER})},
       body=ref("PortalSessionCreate"), body_example={"account": "acme", "ttl_seconds": 3600},
       errors=BODY_ERRORS),
    Op("post", "/v1/deliveries/{id}/retry", "retryDelivery", "deliveries",
       "Try a delivery again now.",
       "A failed delivery becomes pending, due at once; a delivered one is sent once more.",
       {"202": ok(ref("Delivery"), "Queued.",
                  {**DELIVERY_EXAMPLE, "status": "pending", "next_attempt_at": AT,
                   "last_status_code": 500})},
       params=(path_param("id", DELIVERY_ID, "The delivery's id."),),
       errors=("401", "403", "404", "422")),
]


def _header(name: str, description: str, example: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": {"type": "string"}, "example": example}


WEBHOOKS: dict[str, Any] = {
    "delivery": {"post": {
        "operationId": "receiveDelivery", "tags": ["webhooks"],
        "summary": "An event, POSTed to the hook's target_url.",
        "description": "Signed as the Standard Webhooks specification says, so its libraries "
                       "verify it. Retried on the backoff schedule until a 2xx; answer 410 to "
                       "unsubscribe.",
        "parameters": [
            _header("webhook-id", "The event's id: the same on every retry (deduplicate by it).",
                    EVENT_ID),
            _header("webhook-timestamp", "Unix seconds of this attempt.", "1796411283"),
            _header("webhook-signature", "`v1,` + base64 HMAC-SHA256 of "
                    "`<webhook-id>.<webhook-timestamp>.<body>` keyed by the decoded secret; "
                    "space-separated, one per secret, while a rotation lasts.",
                    "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": ref("WebhookBody"), "example": WEBHOOK_EXAMPLE}}},
        "responses": {
            "2XX": {"description": "Delivered."},
            "410": {"description": "Gone: the hook becomes `removed`."},
            "429": {"description": "Retried after `Retry-After` (capped by config)."},
            "503": {"description": "Retried after `Retry-After` (capped by config)."},
            "default": {"description": "Anything else is retried on the backoff schedule."},
        },
        "security": []}},
    "handshake": {"post": {
        "operationId": "receiveHandshake", "tags": ["webhooks"],
        "summary": "Intent verification, before a hook is created or its target changed.",
        "description": "The target must answer 2xx echoing the same X-Hook-Secret header "
                       "within `security.handshake_timeout_seconds`.",
        "parameters": [_header("X-Hook-Secret", "A random token to echo.",
                               "c0ffee5d2a9b4e71a3f6d8c2b5e0a7f1")],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": ref("HookVerification"),
            "example": {"type": "hook.verification", "hook_id": HOOK_ID}}}},
        "responses": {"2XX": {
            "description": "Accepted, when it echoes the header.",
            "headers": {"X-Hook-Secret": {"required": True, "description": "The same token.",
                                          "schema": {"type": "string"}}}}},
        "security": []}},
}


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        assert op.method not in paths.get(op.path, {}), (op.method, op.path)
        # (Path parameters are declared on each Op; a path's {name} without one is a mistake.)
        assert {p["name"] for p in op.params if p["in"] == "path"} == set(
            re.findall(r"{(\w+)}", op.path)), op.path
        paths.setdefault(op.path, {})[op.method] = op.document()
    return {
        "openapi": "3.1.0",
        "info": {"title": "gateway", "version": __version__,
                 "description": "A self-hosted webhook gateway: REST Hooks subscriptions, "
                                "signed durable deliveries.",
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "tags": [*TAGS, {"name": "webhooks", "description": "What a hook's target receives."}],
        "paths": paths,
        "webhooks": WEBHOOKS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
