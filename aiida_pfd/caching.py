"""AiiDA caching for PFD: re-running an identical workflow re-uses its DFT labels, trainings and evaluations.

With caching on, a CalcJob whose inputs hash like those of a finished one is not run again: AiiDA copies the finished
node and its outputs. What is cached is set per profile by the config option ``caching.enabled_for``; PFD turns it on
for :data:`CACHED_PROCESSES`. ``aiida-pfd setup --caching`` calls :func:`enable_caching`.

Failed calculations are never re-used: every failure exit code of PFD's CalcJobs has ``invalidates_cache=True``.
aiida-quantumespresso does that only for pw.x's exit codes below 400; a ``PwCalculation`` that failed with 400 or
more (SCF not converged: 410, out of walltime: 400...) stays a valid cache source, so the workflow passes its DFT
nodes through :func:`invalidate_failed`.
"""

from __future__ import annotations

import typing as t

from .provision import Outcome, Status

if t.TYPE_CHECKING:
    from aiida import orm
    from aiida.manage.configuration import Config

#: Process types that PFD caches: its own CalcJobs (a ``*`` wildcard, which ``caching.enabled_for`` accepts) and pw.x.
CACHED_PROCESSES = ('aiida.calculations:pfd.*', 'aiida.calculations:quantumespresso.pw')

ENABLED_FOR = 'caching.enabled_for'
DISABLED_FOR = 'caching.disabled_for'
DEFAULT_ENABLED = 'caching.default_enabled'

HOW_TO_ENABLE = (
    'Caching is off: `aiida-pfd setup --caching` turns it on, so that a re-run re-uses identical DFT labels and '
    'trainings (docs: how-to/caching).'
)


def _config(config: Config | None) -> Config:
    from aiida.manage.configuration import get_config

    return config if config is not None else get_config()


def _profile_name(config: Config, profile_name: str | None) -> str:
    from aiida.manage import get_manager

    if profile_name is not None:
        return profile_name
    profile = get_manager().get_profile()
    return profile.name if profile is not None else config.default_profile_name


def _value(config: Config, option: str, profile_name: str):
    """The option's value in effect for the profile: its own, else the global one, else the default."""
    return config.get_options(scope=profile_name)[option][2]


def is_caching_enabled(profile_name: str | None = None, config: Config | None = None) -> bool:
    """Return whether caching is on for every process of :data:`CACHED_PROCESSES` in the profile.

    A process counts as cached when ``caching.enabled_for`` lists its identifier (or ``caching.default_enabled`` is
    true) and ``caching.disabled_for`` does not list it. Narrower patterns a user added (e.g. ``disabled_for``
    ``aiida.calculations:pfd.speed``) are kept and not checked here.

    :param profile_name: the profile [the loaded one, else the default profile].
    """
    config = _config(config)
    name = _profile_name(config, profile_name)
    enabled = _value(config, ENABLED_FOR, name)
    disabled = _value(config, DISABLED_FOR, name)
    default = _value(config, DEFAULT_ENABLED, name)
    return all((identifier in enabled or default) and identifier not in disabled for identifier in CACHED_PROCESSES)


def enable_caching(profile_name: str | None = None, config: Config | None = None) -> list[str]:
    """Turn caching on for :data:`CACHED_PROCESSES` in the profile and store the config; return what was added.

    Identifiers already in ``caching.enabled_for`` are kept (a profile without its own value starts from the global
    one); those of :data:`CACHED_PROCESSES` are taken out of ``caching.disabled_for``, where they would conflict.
    Returns ``[]`` and stores nothing when caching was on already. A running daemon must be restarted to see the change.
    """
    config = _config(config)
    name = _profile_name(config, profile_name)
    enabled = list(_value(config, ENABLED_FOR, name))
    disabled = list(_value(config, DISABLED_FOR, name))
    added = [identifier for identifier in CACHED_PROCESSES if identifier not in enabled]
    conflicting = [identifier for identifier in CACHED_PROCESSES if identifier in disabled]
    if not added and not conflicting:
        return []
    config.set_option(ENABLED_FOR, enabled + added, scope=name)
    if conflicting:
        config.set_option(DISABLED_FOR, [i for i in disabled if i not in CACHED_PROCESSES], scope=name)
    config.store()
    return added or conflicting


def disable_caching(profile_name: str | None = None, config: Config | None = None) -> list[str]:
    """Take :data:`CACHED_PROCESSES` out of the profile's ``caching.enabled_for`` (other identifiers are kept) and
    store the config; return what was removed (``[]``: nothing to do, nothing stored)."""
    config = _config(config)
    name = _profile_name(config, profile_name)
    enabled = list(_value(config, ENABLED_FOR, name))
    removed = [identifier for identifier in CACHED_PROCESSES if identifier in enabled]
    if not removed:
        return []
    config.set_option(ENABLED_FOR, [i for i in enabled if i not in CACHED_PROCESSES], scope=name)
    config.store()
    return removed


def ensure_caching(wanted: bool | None, profile_name: str, config: Config | None = None) -> Outcome:
    """The caching step of ``aiida-pfd setup``: turn caching on (``wanted`` true) or off (false), or leave it as it
    is (None), and say what was done."""
    config = _config(config)
    if is_caching_enabled(profile_name, config):
        removed = disable_caching(profile_name, config) if wanted is False else []
        if is_caching_enabled(profile_name, config):
            detail = f'on for {", ".join(CACHED_PROCESSES)}'
            if wanted is False:
                detail = 'on for all calculations: `verdi config unset caching.default_enabled` turns it off'
            return Outcome('caching', profile_name, Status.CREATED if removed else Status.UNCHANGED, detail)
        return Outcome('caching', profile_name, Status.CREATED, f'turned off for {", ".join(removed)}')
    if wanted:
        enable_caching(profile_name, config)
        return Outcome('caching', profile_name, Status.CREATED, f'on for {", ".join(CACHED_PROCESSES)}')
    return Outcome('caching', profile_name, Status.SKIPPED if wanted is None else Status.UNCHANGED, 'off')


def invalidate_failed(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    """Mark every failed CalcJob of ``node`` (the node itself, or the ones it called, at any depth) as not valid for
    caching, so that an identical later run does the calculation again instead of copying the failure.

    A failure is a finished CalcJob with a non-zero exit status (e.g. a ``PwCalculation`` with 410, SCF not
    converged, or 400, out of wall time, which a longer wall time would fix: the wall time is not part of the hash);
    excepted and killed ones are never re-used anyway. Call it for every DFT node the workflow collects, the
    successful ``PwBaseWorkChain`` runs included: their first ``PwCalculation`` may have failed before a restart
    succeeded (an identical re-run then redoes that attempt and its restart, which depends on the attempt's
    ``remote_folder``, instead of copying both). Returns the nodes it marked.
    """
    from aiida import orm

    nodes = [node, *node.called_descendants] if isinstance(node, orm.WorkflowNode) else [node]
    marked = []
    for calculation in nodes:
        if not isinstance(calculation, orm.CalcJobNode) or not calculation.is_finished:
            continue
        if calculation.exit_status != 0 and calculation.base.caching.is_valid_cache:
            calculation.base.caching.is_valid_cache = False
            marked.append(calculation)
    return marked
