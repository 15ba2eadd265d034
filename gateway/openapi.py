"""The OpenAPI 3.1 document served at /openapi.json; a test keeps it in step with the routes."""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


ERRORS = {
    "400": _problem("The body is not JSON."),
    "401": _problem("Missing or unknown API key."),
    "403": _problem("Known key, wrong role or account."),
    "404": _problem("Not found (or another account's)."),
    "413": _problem("Body or batch too large."),
    "422": _problem("JSON that breaks the rules; `errors` names the fields."),
}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, public: bool = False,
        errors: tuple[str, ...] = ("401", "403")) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    for code in errors:
        op["responses"][code] = ERRORS[code]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                                  "default": 50}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "data": {"type": "array", "items": _ref(item)},
        "next_cursor": {"type": ["string", "null"]}}}


SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}}}},
    "KeyCreate": {"type": "object", "required": ["role"], "additionalProperties": False,
                  "properties": {"role": {"enum": ["admin", "publisher", "subscriber"]},
                                 "account": {"type": "string"}}},
    "KeyCreated": {"type": "object", "properties": {
        "id": {"type": "string"}, "key": {"type": "string"}, "role": {"type": "string"},
        "account": {"type": ["string", "null"]}}},
    "Key": {"type": "object", "properties": {
        "id": {"type": "string"}, "role": {"type": "string"},
        "account": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "revoked_at": {"type": ["string", "null"]}, "key_hint": {"type": "string"}}},
    "Topic": {"type": "object", "properties": {"name": {"type": "string"},
                                                "description": {"type": "string"}}},
    "TopicPut": {"type": "object", "additionalProperties": False,
                 "properties": {"description": {"type": "string", "maxLength": 1000}}},
    "HookCreate": {"type": "object", "required": ["target_url"], "additionalProperties": False,
                   "properties": {
                       "target_url": {"type": "string", "format": "uri"},
                       "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                       "event": {"type": "string", "description": "One topic (Zapier)."},
                       "payload": {"enum": ["full", "skinny"], "default": "full"},
                       "ordered": {"type": "boolean", "default": False},
                       "description": {"type": "string"},
                       "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                       "account": {"type": "string", "description": "Required for admin keys."}}},
    "HookPatch": {"type": "object", "additionalProperties": False, "properties": {
        "target_url": {"type": "string", "format": "uri"},
        "topics": {"type": "array", "items": {"type": "string"}},
        "event": {"type": "string"},
        "payload": {"enum": ["full", "skinny"]}, "ordered": {"type": "boolean"},
        "description": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "status": {"enum": ["active", "paused"]}}},
    "Hook": {"type": "object", "properties": {
        "id": {"type": "string"}, "account": {"type": "string"},
        "target_url": {"type": "string"}, "topics": {"type": "array", "items": {"type": "string"}},
        "payload": {"enum": ["full", "skinny"]}, "ordered": {"type": "boolean"},
        "description": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "status": {"enum": ["active", "paused", "disabled", "removed"]},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "consecutive_failures": {"type": "integer"},
        "secret": {"type": "string", "description": "Only on create."}}},
    "Secret": {"type": "object", "properties": {"secret": {"type": "string"}}},
    "EventPublish": {"type": "object", "required": ["topic", "account"],
                     "additionalProperties": False, "properties": {
                         "topic": {"type": "string"}, "account": {"type": "string"},
                         "data": {}, "resource_url": {"type": "string", "format": "uri"},
                         "idempotency_key": {"type": "string", "maxLength": 255}}},
    "Published": {"type": "object", "properties": {"id": {"type": "string"},
                                                    "deliveries": {"type": "integer"}}},
    "Event": {"type": "object", "properties": {
        "id": {"type": "string"}, "topic": {"type": "string"}, "account": {"type": "string"},
        "sequence": {"type": "integer"}, "data": {},
        "resource_url": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "deliveries": {"type": "object", "properties": {
            s: {"type": "integer"} for s in ("pending", "delivered", "failed", "cancelled")}}}},
    "Delivery": {"type": "object", "properties": {
        "id": {"type": "string"}, "event_id": {"type": "string"}, "hook_id": {"type": "string"},
        "topic": {"type": "string"},
        "status": {"enum": ["pending", "delivered", "failed", "cancelled"]},
        "attempts": {"type": "integer"}, "next_attempt_at": {"type": ["string", "null"]},
        "last_status_code": {"type": ["integer", "null"]}, "created_at": {"type": "string"},
        "updated_at": {"type": "string"}}},
    "Attempt": {"type": "object", "properties": {
        "at": {"type": "string"}, "status_code": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]}, "duration_ms": {"type": "number"},
        "response_excerpt": {"type": "string"}}},
    "DeliveryWithAttempts": {"allOf": [_ref("Delivery"), {"type": "object", "properties": {
        "attempt_log": {"type": "array", "items": _ref("Attempt")}}}]},
    "Recover": {"type": "object", "required": ["since"], "additionalProperties": False,
                "properties": {
                    "since": {"type": "string", "format": "date-time"},
                    "until": {"type": "string", "format": "date-time"},
                    "statuses": {"type": "array", "minItems": 1, "default": ["failed"],
                                 "items": {"enum": ["failed", "delivered", "cancelled"]}}}},
    "Recovered": {"type": "object", "properties": {"deliveries": {"type": "integer"}}},
    "PortalSessionCreate": {"type": "object", "required": ["account"],
                            "additionalProperties": False, "properties": {
                                "account": {"type": "string"},
                                "ttl_seconds": {"type": "number", "minimum": 1,
                                                "maximum": 604800, "default": 3600}}},
    "PortalSession": {"type": "object", "properties": {
        "url": {"type": "string", "description": "Absolute when server.public_url is set."},
        "expires_at": {"type": "string", "format": "date-time"}}},
    "WebhookBody": {"description": "What a target receives.", "type": "object", "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "timestamp": {"type": "string"},
        "account": {"type": "string"}, "sequence": {"type": "integer"}, "data": {},
        "resource_url": {"type": "string"}}},
}


@cache
def openapi_document() -> dict[str, Any]:
    hook_id = [_path_param("id")]
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("The process is up.", {"200": _json({"type": "object"}, "Up.")},
                                public=True, errors=())},
        "/readyz": {"get": _op("The database answers and the delivery loop runs.", {
            "200": _json({"type": "object"}, "Ready."),
            "503": _json({"type": "object"}, "Not ready.")}, public=True, errors=())},
        "/metrics": {"get": _op("Prometheus metrics (admin key unless metrics_public).", {
            "200": {"description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/openapi.json": {"get": _op("This document.", {"200": _json({"type": "object"}, "OK")},
                                     public=True, errors=())},
        "/v1/keys": {
            "post": _op("Create an API key (admin); the key is shown once.",
                        {"201": _json(_ref("KeyCreated"), "Created.")}, body=_ref("KeyCreate"),
                        errors=("400", "401", "403", "413", "422")),
            "get": _op("List API keys (never the keys themselves).",
                       {"200": _json({"type": "object", "properties": {
                           "data": {"type": "array", "items": _ref("Key")}}}, "OK")}),
        },
        "/v1/keys/{id}": {"delete": _op("Revoke a key at once.", {"204": {"description": "Revoked."}},
                                        params=[_path_param("id")],
                                        errors=("401", "403", "404"))},
        "/v1/topics": {"get": _op("The topic catalog.", {"200": _json({"type": "object", "properties": {
            "data": {"type": "array", "items": _ref("Topic")}}}, "OK")}, errors=("401",))},
        "/v1/topics/{name}": {"put": _op(
            "Create or update a topic (admin).",
            {"200": _json(_ref("Topic"), "Updated."), "201": _json(_ref("Topic"), "Created.")},
            body=_ref("TopicPut"), params=[_path_param("name")],
            errors=("400", "401", "403", "413", "422"))},
        "/v1/hooks": {
            "post": _op("Create a hook; the target must answer the X-Hook-Secret handshake.",
                        {"201": _json(_ref("Hook"), "Created; `secret` shown once.")},
                        body=_ref("HookCreate"), errors=("400", "401", "403", "413", "422")),
            "get": _op("List hooks.", {"200": _json(_page("Hook"), "OK")}, params=PAGE,
                       errors=("401", "403", "422")),
        },
        "/v1/hooks/{id}": {
            "get": _op("One hook.", {"200": _json(_ref("Hook"), "OK")}, params=hook_id,
                       errors=("401", "403", "404")),
            "patch": _op("Change a hook; a new target_url is verified again.",
                         {"200": _json(_ref("Hook"), "OK")}, body=_ref("HookPatch"),
                         params=hook_id, errors=("400", "401", "403", "404", "413", "422")),
            "delete": _op("Delete a hook; its waiting deliveries are cancelled.",
                          {"204": {"description": "Deleted."}}, params=hook_id,
                          errors=("401", "403", "404")),
        },
        "/v1/hooks/{id}/rotate-secret": {"post": _op(
            "New secret; for 24 hours deliveries are signed with both.",
            {"200": _json(_ref("Secret"), "OK")}, params=hook_id, errors=("401", "403", "404"))},
        "/v1/hooks/{id}/deliveries": {"get": _op(
            "A hook's deliveries, newest first.", {"200": _json(_page("Delivery"), "OK")},
            params=[*hook_id, *PAGE, {"name": "status", "in": "query", "schema": {
                "enum": ["pending", "delivered", "failed", "cancelled"]}}],
            errors=("401", "403", "404", "422"))},
        "/v1/hooks/{id}/recover": {"post": _op(
            "Deliveries created in [since, until) with one of the statuses (default failed) go "
            "back to pending with a fresh set of retries, in their original order.",
            {"202": _json(_ref("Recovered"), "Recovered, durably.")}, body=_ref("Recover"),
            params=hook_id, errors=("400", "401", "403", "404", "413", "422"))},
        "/v1/hooks/{id}/test": {"post": _op(
            "Publish a gateway.test event for this hook alone.",
            {"202": _json(_ref("Published"), "Stored durably with its one delivery.")},
            params=hook_id, errors=("401", "403", "404"))},
        "/v1/portal/sessions": {"post": _op(
            "A portal sign-in link for one account (admin).",
            {"201": _json(_ref("PortalSession"), "Created.")}, body=_ref("PortalSessionCreate"),
            errors=("400", "401", "403", "413", "422"))},
        "/v1/events": {"get": _op(
            "Events, newest first: a subscriber's own account's, every account's for "
            "publishers and admins.", {"200": _json(_page("Event"), "OK")},
            params=[*PAGE, *({"name": n, "in": "query", "schema": sch} for n, sch in (
                ("topic", {"type": "string"}), ("account", {"type": "string"}),
                ("since", {"type": "string", "format": "date-time"}),
                ("until", {"type": "string", "format": "date-time"})))],
            errors=("401", "403", "422")), "post": _op(
            "Publish one event, or a JSON array of events atomically.",
            {"202": _json({"oneOf": [_ref("Published"), {"type": "object", "properties": {
                "data": {"type": "array", "items": _ref("Published")}}}]},
                "Stored durably with its deliveries.")},
            body={"oneOf": [_ref("EventPublish"),
                            {"type": "array", "items": _ref("EventPublish"), "minItems": 1}]},
            params=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
            errors=("400", "401", "403", "413", "422"))},
        "/v1/events/{id}": {"get": _op("One event with its delivery counts.",
                                       {"200": _json(_ref("Event"), "OK")},
                                       params=[_path_param("id")], errors=("401", "404"))},
        "/v1/deliveries/{id}": {"get": _op(
            "One delivery with its attempt log.", {"200": _json(_ref("DeliveryWithAttempts"), "OK")},
            params=[_path_param("id")], errors=("401", "403", "404"))},
        "/v1/deliveries/{id}/retry": {"post": _op(
            "Try a delivery again now (a delivered one is sent once more).",
            {"202": _json(_ref("Delivery"), "Queued.")},
            params=[_path_param("id")], errors=("401", "403", "404", "422"))},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "gateway", "version": __version__,
                 "description": "A self-hosted webhook gateway."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
