"""The PostgreSQL backend: the verbs of gateway.storage.backend.Backend over asyncpg, for several
gateway processes sharing one database (on one machine or many).

    connector.py   the asyncpg pool, transactions (DatabaseUnavailable when it cannot write),
                   numbered migrations under an advisory lock, the LISTEN connection; the only
                   module that touches asyncpg
    memory.py      what a process keeps (keys, topics, routing indexes, its claims) and how
                   the other processes' notifications drop it
    keys.py        KeyStore, TopicStore
    hooks.py       HookStore
    events.py      EventStore: publishing (group commit, per-account sequence rows)
    claims.py      DeliveryStore: deliveries, claims as leases, attempts (gateway.health decides)
    portal.py      PortalStore: portal sessions
    views.py       ViewStore: the portal's read-only aggregates
    recovery.py    RecoveryStore: recovery (test events not there yet: 501)
    retention.py   RetentionStore

Not on PostgreSQL yet: operational events (SQLite publishes them inside record_attempts),
admin hooks of every account (account "*"), test events.

Its SQL is gateway/sql/postgres/ (numbered migrations and queries.sql). The pure policy it
shares with SQLite: gateway.routing, gateway.health, gateway.storage.rows and values.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.backend import Backend
from gateway.storage.postgres.claims import DeliveryStore
from gateway.storage.postgres.connector import PgConnector, migrate
from gateway.storage.postgres.events import EventStore
from gateway.storage.postgres.hooks import HookStore
from gateway.storage.postgres.keys import KeyStore, TopicStore
from gateway.storage.postgres.memory import PgMemory
from gateway.storage.postgres.portal import PortalStore
from gateway.storage.postgres.recovery import RecoveryStore
from gateway.storage.postgres.retention import RetentionStore
from gateway.storage.postgres.views import ViewStore


class PgStorage:
    """PostgreSQL at `url`; its verbs by resource, bound once here as on SQLite's Storage."""

    def __init__(self, url: str, *, idempotency_ttl: float = 86400, claim_lease: float = 60,
                 pool_size: int = 10) -> None:
        self.url = url
        self.connector = db = PgConnector(url, max_size=pool_size)
        self._memory = memory = PgMemory(db)
        self.keys = keys = KeyStore(memory)
        self.topics = topics = TopicStore(memory)
        self.hooks = hooks = HookStore(memory)
        self.events = events = EventStore(memory, idempotency_ttl)
        self.deliveries = deliveries = DeliveryStore(memory, claim_lease)
        self.recovery = recovery = RecoveryStore(memory)
        self.portal = portal = PortalStore(db)
        self.views = views = ViewStore(db)
        self.retention = retention = RetentionStore(memory)

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
        self.reset_claims = deliveries.reset_claims
        self.release_claims = deliveries.release_claims
        self.claim_due = deliveries.claim_due
        self.next_due_at = deliveries.next_due_at
        self.due_backlog = deliveries.due_backlog
        self.record_attempts = deliveries.record_attempts

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

        self.prune = retention.prune

    async def open(self, *, max_version: int | None = None) -> None:
        """Migrate (safe beside other processes starting), connect, listen."""
        await migrate(self.url, max_version)
        await self.connector.open(self._memory.heard, self._memory.lost)
        self.deliveries.start()

    async def close(self) -> None:
        await self.events.close()
        await self.deliveries.close()
        await self.connector.close()

    async def schema_version(self) -> int:
        return int(await self.connector.pool.fetchval("SELECT MAX(version) FROM schema_migrations"))

    async def ping(self) -> bool:
        return bool(await self.connector.pool.fetchval("SELECT 1") == 1)

    @property
    def writable(self) -> bool:
        return self.connector.writable

    def set_waker(self, wake: Callable[[], None]) -> None:
        """Called when another process published, retried or resumed something due."""
        self._memory.waker = wake

    @property
    def owner(self) -> str:
        """This process's name on its claims (claimed_by)."""
        return self._memory.owner

    # Counters the tests and benchmarks read.
    @property
    def publish_commits(self) -> int:
        return self.events.publish_commits

    @property
    def claim_transactions(self) -> int:
        return self.deliveries.claim_transactions

    @property
    def claims_by_host(self) -> int:
        return self.deliveries.claims_by_host


def _conforms(s: PgStorage) -> Backend:
    return s  # mypy checks here that PgStorage has every verb of Backend, with its signature
