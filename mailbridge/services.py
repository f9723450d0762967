"""The things every part needs, built once from the config and passed around explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from mailbridge.config import WEBHOOK_LISTENERS, Config, signing_keys, webhook_listeners
from mailbridge.deadlines import stages
from mailbridge.deadlines.calendar import WorkingCalendar, calendar_from_config
from mailbridge.delivery.templating import Templates
from mailbridge.store.blobs import BlobStore


@dataclass
class Services:
    config: Config
    engine: Engine
    calendar: WorkingCalendar
    blobs: BlobStore
    templates: Templates
    signing_key: bytes | None = None  # signs what we send
    # The signing key, then the previous ones: what a reply's signature is checked against.
    verifying_keys: tuple[bytes, ...] = ()
    own_addresses: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, config: Config, engine: Engine) -> Services:
        keys = signing_keys(config)
        # Every session on the engine then queues the webhooks of the changes it records,
        # and keeps the cases' next stage moments on this config's rules.
        engine.update_execution_options(**{WEBHOOK_LISTENERS: webhook_listeners(config)})
        calendar = calendar_from_config(config.council, config.storage.data_dir)
        stages.watch(engine, stages.Basis(config, calendar))
        return cls(
            config=config,
            engine=engine,
            calendar=calendar,
            blobs=BlobStore(config.storage.data_dir),
            templates=Templates(config.templates.directory),
            signing_key=keys[0] if keys else None,
            verifying_keys=keys,
            own_addresses=frozenset({str(config.smtp.from_address).lower()}),
        )
