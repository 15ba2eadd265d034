"""Storage: the only package that talks to the database, behind domain verbs.

Laid out the way procrastinate splits its connector from its manager:

    connector.py   the SQLite connection and its threads (inline or threaded transactions,
                   relaxed commits, checkpoints, adapters, the switch interval); the only
                   module that touches aiosqlite
    queries.py     the named SQL of gateway/sql/ (schema, numbered migrations, queries.sql,
                   rows.sql), read once; no statement is assembled at run time
    rows.py        row → model, one function per model
    keys.py        KeyStore: API keys (and the accounts they name)
    hooks.py       TopicStore, HookStore, and HookMemory (routing index, delivery configs)
    events.py      EventStore: publishing (group commit), reading events
    deliveries.py  DeliveryStore: reading and retrying deliveries
    claims.py      ClaimStore: claims and attempts, applying gateway.health's verdicts
    operational.py operational events, published inside the transaction of their change
    recovery.py    RecoveryStore: a hook's deliveries back to pending, test events
    portal.py      PortalStore: portal sign-in sessions by token hash
    views.py       ViewStore: the aggregates behind the portal's charts and operator pages
    retention.py   RetentionStore: what the pruner deletes, a small transaction at a time
    values.py      what the verbs take and give (NewEvent, Published, Claim, …), any backend
    backend.py     Backend: the Protocol of every verb
    sqlite.py      Storage: the SQLite backend, the stores over one connector

Policy is pure and outside: gateway.routing (topic patterns and the routing index),
gateway.health (disable after persistent failure, 410 → removed), gateway.retry.

A backend implements backend.Backend:
    lifecycle  open, close, schema_version, ping
    keys       create_key, list_keys, revoke_key, cached_key, fetch_key, key_by_hash
    topics     put_topics, list_topics, known_topics, topic_names
    hooks      create_hook, get_hook, list_hooks, update_hook, delete_hook, rotate_secret,
               hook_counts
    events     publish, get_event, list_events, delivery_counts, purge_idempotency
    deliveries get_delivery, list_deliveries, retry_delivery, pending_count
    recovery   recover_deliveries, publish_test_event
    portal     create_portal_session, portal_session, delete_portal_session,
               purge_portal_sessions
    views      hook_attempts_by_bucket, last_failures, attempts_by_bucket, backlog_by_host,
               troubled_hooks, account_summaries
    claims     reset_claims, release_claims, claim_due, next_due_at, due_backlog,
               record_attempts
    retention  prune
with the values of values.py, and reuses routing, health and rows' models. Another backend
(PostgreSQL) goes beside sqlite.py with its own connector and stores.
"""

from __future__ import annotations

from gateway.storage.backend import Backend
from gateway.storage.queries import SCHEMA_VERSION
from gateway.storage.sqlite import Storage
from gateway.storage.values import AttemptResult, Claim, Claimed, NewEvent, Published, RecordSummary

__all__ = [
    "SCHEMA_VERSION",
    "AttemptResult",
    "Backend",
    "Claim",
    "Claimed",
    "NewEvent",
    "Published",
    "RecordSummary",
    "Storage",
]
