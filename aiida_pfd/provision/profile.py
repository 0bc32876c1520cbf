"""Create or reuse the AiiDA profile that PFD runs in."""

from __future__ import annotations

import typing as t

from .outcome import Outcome, Status

if t.TYPE_CHECKING:
    from aiida.manage.configuration import Config, Profile

DEFAULT_PROFILE_NAME = 'pfd'
BROKERS = ('zeromq', 'rabbitmq', 'none')


def get_broker_settings(broker: str) -> tuple[str | None, dict | None]:
    """Return the broker entry point and its configuration for ``broker`` (``zeromq``, ``rabbitmq`` or ``none``)."""
    from aiida.plugins import BrokerFactory

    if broker == 'zeromq':
        return 'core.zeromq', BrokerFactory('core.zeromq').get_default_config()
    if broker == 'rabbitmq':
        from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

        return 'core.rabbitmq', detect_rabbitmq_config()
    if broker == 'none':
        return None, None
    raise ValueError(f'unknown broker `{broker}`: choose one of {", ".join(BROKERS)}.')


def ensure_profile(
    config: Config,
    name: str = DEFAULT_PROFILE_NAME,
    *,
    email: str = 'aiida@localhost',
    broker: str = 'zeromq',
    storage_backend: str = 'core.sqlite_dos',
    storage_config: dict | None = None,
) -> tuple[Profile, Outcome]:
    """Return the profile ``name``, creating it (SQLite storage and the built-in ZeroMQ broker by default) if needed.

    An existing profile is reused as it is, whatever its storage and broker: that is how a user with a PostgreSQL and
    RabbitMQ installation points PFD at it.
    """
    from aiida.manage.configuration import create_profile

    if name in config.profile_names:
        profile = config.get_profile(name)
        detail = f'{profile.storage_backend}, broker {profile.process_control_backend or "none"}'
        return profile, Outcome('profile', name, Status.UNCHANGED, detail)

    broker_backend, broker_config = get_broker_settings(broker)
    profile = create_profile(
        config,
        name=name,
        email=email,
        storage_backend=storage_backend,
        storage_config=storage_config or {},
        broker_backend=broker_backend,
        broker_config=broker_config,
    )
    config.set_option('runner.poll.interval', 1, scope=profile.name)
    if config.default_profile_name is None:
        config.set_default_profile(profile.name)
    config.store()
    return profile, Outcome('profile', name, Status.CREATED, f'{storage_backend}, broker {broker_backend or "none"}')


def postgres_storage_config(profile_name: str, **connection) -> dict:
    """Create a PostgreSQL user and database for ``profile_name`` and return the ``core.psql_dos`` storage config.

    ``connection`` takes the keyword arguments of ``verdi presto``'s PostgreSQL detection (``postgres_hostname``,
    ``postgres_port``, ``postgres_username``, ``postgres_password``, ``non_interactive``).
    """
    from aiida.cmdline.commands.cmd_presto import detect_postgres_config

    return detect_postgres_config(profile_name=profile_name, **connection)
