"""The JSON shapes of the HTTP API for the OpenAPI document: schemas and example values. Every
object a response carries lists in `required` the fields that are always there."""

from __future__ import annotations

from typing import Any

# Example values, consistent across the document (an example hook's id is the id in its
# deliveries' examples).
KEY_ID = "key_01m917kyq1cvk2mqhxz5v3dz95"
HOOK_ID = "hook_01m917kyq1mw70xx65v1x5npk8"
EVENT_ID = "evt_01m917kyq1tdhcvy2046js32hp"
DELIVERY_ID = "dlv_01m917kyq1f97kxmyzzj1ghynx"
SECRET = "whsec_4B65aszSwD9pQ9rcrFuOan5vQsu+0hsJdw7e/8Fis3s="
AT = "2026-12-04T19:08:03.746Z"
LATER = "2026-12-04T19:08:04.012Z"
TARGET = "https://crm.example.com/hooks/contacts"

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
TIME = {"type": "string", "format": "date-time"}
DELIVERY_STATUSES = ["pending", "delivered", "failed", "cancelled"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], *, optional: tuple[str, ...] = (), **more: Any
        ) -> dict[str, Any]:
    """An object schema whose properties are all required but the `optional` ones."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties, **more}


def page(item: str) -> dict[str, Any]:
    return obj({"data": {"type": "array", "items": ref(item)},
                "next_cursor": {**NULLABLE_STRING, "description":
                                "Pass as ?cursor= for the next page; null on the last one."}})


def listing(item: str) -> dict[str, Any]:
    return obj({"data": {"type": "array", "items": ref(item)}})


HEADERS = {"type": "object", "additionalProperties": STRING,
           "description": "Extra headers sent with every delivery."}

SCHEMAS: dict[str, Any] = {
    "Problem": obj({
        "type": STRING, "title": STRING, "status": INTEGER, "detail": STRING,
        "errors": {"type": "array", "description": "Validation failures, one per field.",
                   "items": obj({"field": STRING, "message": STRING})}},
        optional=("errors",), description="An RFC 9457 problem document."),
    "Health": obj({"status": {"enum": ["ok"]}}),
    "Readiness": obj({"status": {"enum": ["ok", "unavailable"]},
                      "checks": obj({"database": STRING, "delivery_loop": STRING})}),
    "KeyCreate": {"type": "object", "required": ["role"], "additionalProperties": False,
                  "properties": {"role": {"enum": ["admin", "publisher", "subscriber"]},
                                 "account": {**STRING, "description":
                                             "Required for (and only for) subscriber keys."}}},
    "KeyCreated": obj({"id": STRING, "key": {**STRING, "description": "Shown this once."},
                       "role": STRING, "account": NULLABLE_STRING}),
    "Key": obj({"id": STRING, "role": {"enum": ["admin", "publisher", "subscriber"]},
                "account": NULLABLE_STRING, "created_at": TIME,
                "revoked_at": {"type": ["string", "null"], "format": "date-time"},
                "key_hint": {**STRING, "description": "The key's last four characters."}}),
    "Topic": obj({"name": STRING, "description": STRING}),
    "TopicPut": {"type": "object", "additionalProperties": False,
                 "properties": {"description": {"type": "string", "maxLength": 1000}}},
    "HookCreate": {"type": "object", "required": ["target_url"], "additionalProperties": False,
                   "properties": {
                       "target_url": {"type": "string", "format": "uri"},
                       "topics": {"type": "array", "items": STRING, "minItems": 1,
                                  "description": "Exact names, `prefix.*`, or `*`."},
                       "event": {**STRING, "description": "One topic, in place of `topics` "
                                                          "(REST Hooks clients such as Zapier)."},
                       "payload": {"enum": ["full", "skinny"], "default": "full"},
                       "ordered": {"type": "boolean", "default": False},
                       "description": STRING,
                       "headers": HEADERS,
                       "account": {**STRING, "description": "Required for admin keys."}}},
    "HookPatch": {"type": "object", "additionalProperties": False, "properties": {
        "target_url": {"type": "string", "format": "uri"},
        "topics": {"type": "array", "items": STRING, "minItems": 1},
        "event": STRING,
        "payload": {"enum": ["full", "skinny"]}, "ordered": {"type": "boolean"},
        "description": STRING, "headers": HEADERS,
        "status": {"enum": ["active", "paused"]}}},
    "Hook": obj({
        "id": STRING, "account": STRING, "target_url": STRING,
        "topics": {"type": "array", "items": STRING},
        "payload": {"enum": ["full", "skinny"]}, "ordered": {"type": "boolean"},
        "description": STRING, "headers": HEADERS,
        "status": {"enum": ["active", "paused", "disabled", "removed"]},
        "created_at": TIME, "updated_at": TIME,
        "consecutive_failures": {**INTEGER, "description": "Failed attempts in a row."}}),
    "HookWithSecret": {"allOf": [ref("Hook"), obj({"secret": {
        **STRING, "description": "`whsec_` + base64 of 32 bytes; shown on create only."}})]},
    "Secret": obj({"secret": STRING}),
    "EventPublish": {"type": "object", "required": ["topic", "account"],
                     "additionalProperties": False, "properties": {
                         "topic": STRING, "account": STRING,
                         "data": {"description": "Any JSON; delivered as is."},
                         "resource_url": {"type": "string", "format": "uri"},
                         "idempotency_key": {"type": "string", "maxLength": 255}}},
    "Published": obj({"id": STRING, "deliveries": {
        **INTEGER, "description": "How many hooks will receive it."}}),
    "PublishedBatch": obj({"data": {"type": "array", "items": ref("Published")}}),
    "Event": obj({
        "id": STRING, "topic": STRING, "account": STRING, "sequence": INTEGER,
        "data": {"description": "What the publisher sent."},
        "resource_url": NULLABLE_STRING, "created_at": TIME,
        "deliveries": obj({s: INTEGER for s in DELIVERY_STATUSES})}),
    "Delivery": obj({
        "id": STRING, "event_id": STRING, "hook_id": STRING, "topic": STRING,
        "status": {"enum": DELIVERY_STATUSES},
        "attempts": INTEGER,
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time",
                            "description": "Set while pending."},
        "last_status_code": {"type": ["integer", "null"]}, "created_at": TIME,
        "updated_at": TIME}),
    "Attempt": obj({
        "at": TIME, "status_code": {"type": ["integer", "null"]},
        "error": {**NULLABLE_STRING, "description":
                  "What happened when the target did not answer: timeout, connection "
                  "refused, dns: …, tls: …, redirect refused, address refused."},
        "duration_ms": {"type": "number"},
        "response_excerpt": {**STRING, "description": "The first 1 KiB of the answer."}}),
    "DeliveryWithAttempts": {"allOf": [ref("Delivery"), obj({
        "attempt_log": {"type": "array", "items": ref("Attempt")}})]},
    "Recover": {"type": "object", "required": ["since"], "additionalProperties": False,
                "properties": {
                    "since": {**TIME, "description": "Deliveries created at or after this."},
                    "until": {**TIME, "description": "...and before this (default: no end)."},
                    "statuses": {"type": "array", "minItems": 1, "default": ["failed"],
                                 "items": {"enum": ["failed", "delivered", "cancelled"]}}}},
    "Recovered": obj({"deliveries": {**INTEGER, "description": "How many became pending."}}),
    "PortalSessionCreate": {"type": "object", "required": ["account"],
                            "additionalProperties": False, "properties": {
                                "account": STRING,
                                "ttl_seconds": {"type": "number", "minimum": 1,
                                                "maximum": 604800, "default": 3600}}},
    "PortalSession": obj({
        "url": {**STRING, "description": "The sign-in link; absolute when server.public_url "
                                         "is set."},
        "expires_at": {**TIME, "description": "The link stops working then."}}),
    "WebhookBody": obj({
        "id": {**STRING, "description": "The event's id; the same as the webhook-id header."},
        "type": {**STRING, "description": "The topic."},
        "timestamp": {**TIME, "description": "When the event was published."},
        "account": STRING,
        "sequence": {**INTEGER, "description": "Grows by one per event of the account."},
        "data": {"description": "The event's data (full payloads)."},
        "resource_url": {**STRING, "description": "Where to fetch the event (skinny payloads)."},
    }, optional=("data", "resource_url"), description="What a target receives."),
    "HookVerification": obj({"type": {"const": "hook.verification"}, "hook_id": STRING},
                            description="The intent-verification (handshake) body."),
}

# -- examples -----------------------------------------------------------------------------------

KEY_EXAMPLE = {"id": KEY_ID, "role": "subscriber", "account": "acme", "created_at": AT,
               "revoked_at": None, "key_hint": "…dz95"}
TOPIC_EXAMPLE = {"name": "contact.created", "description": "A contact was created."}
HOOK_CREATE_EXAMPLE = {"target_url": TARGET, "topics": ["contact.created", "contact.*"],
                       "payload": "full", "ordered": False, "description": "CRM sync",
                       "headers": {"X-Custom": "value"}}
HOOK_EXAMPLE = {"id": HOOK_ID, "account": "acme", "target_url": TARGET,
                "topics": ["contact.created", "contact.*"], "payload": "full", "ordered": False,
                "description": "CRM sync", "headers": {"X-Custom": "value"}, "status": "active",
                "created_at": AT, "updated_at": AT, "consecutive_failures": 0}
EVENT_PUBLISH_EXAMPLE = {"topic": "contact.created", "account": "acme",
                         "data": {"id": 17, "email": "a@b.c"},
                         "resource_url": "https://api.example.com/contacts/17",
                         "idempotency_key": "crm-17-created"}
EVENT_EXAMPLE = {"id": EVENT_ID, "topic": "contact.created", "account": "acme", "sequence": 42,
                 "data": {"id": 17, "email": "a@b.c"},
                 "resource_url": "https://api.example.com/contacts/17", "created_at": AT,
                 "deliveries": {"pending": 0, "delivered": 1, "failed": 0, "cancelled": 0}}
DELIVERY_EXAMPLE = {"id": DELIVERY_ID, "event_id": EVENT_ID, "hook_id": HOOK_ID,
                    "topic": "contact.created", "status": "delivered", "attempts": 1,
                    "next_attempt_at": None, "last_status_code": 200, "created_at": AT,
                    "updated_at": LATER}
ATTEMPT_EXAMPLE = {"at": LATER, "status_code": 200, "error": None, "duration_ms": 12.5,
                   "response_excerpt": "ok"}
WEBHOOK_EXAMPLE = {"id": EVENT_ID, "type": "contact.created", "timestamp": AT,
                   "account": "acme", "sequence": 42, "data": {"id": 17, "email": "a@b.c"}}
