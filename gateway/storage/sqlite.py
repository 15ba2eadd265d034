"""The SQLite backend: one connector and the stores over it, as one Storage."""

from __future__ import annotations

from gateway.storage.backend import Backend
from gateway.storage.claims import ClaimStore
from gateway.storage.connector import SqliteConnector
from gateway.storage.deliveries import DeliveryStore
from gateway.storage.events import EventStore
from gateway.storage.hooks import HookMemory, HookStore, TopicStore
from gateway.storage.keys import KeyStore
from gateway.storage.portal import PortalStore
from gateway.storage.recovery import RecoveryStore
from gateway.storage.retention import RetentionStore
from gateway.storage.views import ViewStore


class Storage:
    """SQLite in WAL mode (see connector.py), its verbs by resource (see backend.Backend).

    The verbs are the stores' own bound methods, set once here: the hot paths (publish,
    claim_due, record_attempts, cached_key) pay no extra call for the facade."""

    def __init__(self, path: str, *, synchronous: str = "full", idempotency_ttl: float = 86400,
                 busy_timeout: float = 5.0, inline: bool = True) -> None:
        self.path = path
        self.connector = db = SqliteConnector(path, synchronous=synchronous,
                                              busy_timeout=busy_timeout, inline=inline)
        memory = HookMemory()
        self.keys = keys = KeyStore(db)
        self.topics = topics = TopicStore(db)
        self.hooks = hooks = HookStore(db, memory)
        self.events = events = EventStore(db, memory, idempotency_ttl)
        self.deliveries = deliveries = DeliveryStore(db)
        self.claims = claims = ClaimStore(db, memory)
        self.recovery = recovery = RecoveryStore(db, memory)
        self.portal = portal = PortalStore(db)
        self.views = views = ViewStore(db)
        self.retention = retention = RetentionStore(db, memory)
        self._memory = memory

        self.schema_version = db.schema_version
        self.ping = db.ping

        self.create_key = keys.create_key
        self.list_keys = keys.list_keys
        self.revoke_key = keys.revoke_key
        self.cached_key = keys.cached_key
        self.fetch_key = keys.fetch_key
        self.key_by_hash = keys.key_by_hash

        self.put_topics = topics.put_topics
        self.list_topics = topics.list_topics
        self.known_topics = topics.known_topics
        self.topic_names = topics.topic_names

        self.create_hook = hooks.create_hook
        self.get_hook = hooks.get_hook
        self.list_hooks = hooks.list_hooks
        self.update_hook = hooks.update_hook
        self.delete_hook = hooks.delete_hook
        self.rotate_secret = hooks.rotate_secret
        self.hook_counts = hooks.hook_counts

        self.publish = events.publish
        self.get_event = events.get_event
        self.list_events = events.list_events
        self.delivery_counts = events.delivery_counts
        self.purge_idempotency = events.purge_idempotency

        self.get_delivery = deliveries.get_delivery
        self.list_deliveries = deliveries.list_deliveries
        self.retry_delivery = deliveries.retry_delivery
        self.pending_count = deliveries.pending_count

        self.recover_deliveries = recovery.recover_deliveries
        self.publish_test_event = recovery.publish_test_event

        self.create_portal_session = portal.create_portal_session
        self.portal_session = portal.portal_session
        self.delete_portal_session = portal.delete_portal_session
        self.purge_portal_sessions = portal.purge_portal_sessions

        self.hook_attempts_by_bucket = views.hook_attempts_by_bucket
        self.last_failures = views.last_failures
        self.attempts_by_bucket = views.attempts_by_bucket
        self.backlog_by_host = views.backlog_by_host
        self.troubled_hooks = views.troubled_hooks
        self.account_summaries = views.account_summaries

        self.reset_claims = claims.reset_claims
        self.release_claims = claims.release_claims
        self.claim_due = claims.claim_due
        self.next_due_at = claims.next_due_at
        self.due_backlog = claims.due_backlog
        self.record_attempts = claims.record_attempts

        self.prune = retention.prune

    async def open(self, *, max_version: int | None = None) -> None:
        await self.connector.open(max_version=max_version)

    async def close(self) -> None:
        await self.events.close()
        await self.connector.close()

    @property
    def writable(self) -> bool:
        """False from a write that failed because the database cannot write (disk full,
        locked past busy_timeout, read-only) until a write succeeds again."""
        return self.connector.writable

    # Counters the tests and benchmarks read.
    @property
    def publish_commits(self) -> int:
        return self.events.publish_commits

    @property
    def claim_transactions(self) -> int:
        return self.claims.claim_transactions

    @property
    def claims_by_host(self) -> int:
        return self.claims.claims_by_host

    @property
    def hook_configs_held(self) -> int:
        """Hooks whose delivery config is in memory (bounded by hooks.HOOK_CFG_MAX)."""
        return self._memory.configs_held


def _conforms(s: Storage) -> Backend:
    return s  # mypy checks here that Storage has every verb of Backend, with its signature
