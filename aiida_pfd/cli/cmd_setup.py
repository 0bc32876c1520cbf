"""``aiida-pfd setup``: everything PFD needs in an AiiDA profile, idempotently."""

from __future__ import annotations

import pathlib
import sys

import click
from aiida.cmdline.utils import echo

from . import cmd_root


def _profile_given_on_command_line(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return root.get_parameter_source('profile') in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


@cmd_root.command('setup')
@click.option('--profile-name', default='pfd', show_default=True, help='Profile to create, or to reuse if it exists.')
@click.option('--email', default='aiida@localhost', show_default=True, help='Email of the default user.')
@click.option(
    '--broker',
    type=click.Choice(['zeromq', 'rabbitmq', 'none']),
    default='zeromq',
    show_default=True,
    help='Message broker of a new profile: the built-in ZeroMQ one needs no service.',
)
@click.option('--use-postgres', is_flag=True, help='Store a new profile in PostgreSQL instead of SQLite.')
@click.option('--postgres-hostname', default='localhost', show_default=True)
@click.option('--postgres-port', type=int, default=5432, show_default=True)
@click.option('--postgres-username', default='postgres', show_default=True)
@click.option('--postgres-password', default=None)
@click.option(
    '--computer',
    'computer_label',
    default=None,
    help='An existing, configured computer to register the codes on (e.g. a Slurm cluster). Default: this machine, '
    'as `localhost`.',
)
@click.option('--mpiprocs', type=int, default=None, help='MPI processes per machine for a new localhost [all cores].')
@click.option('--pw-executable', default=None, help='Path of pw.x [found on PATH].')
@click.option('--dp-executable', default=None, help='Path of dp [beside this Python].')
@click.option('--lmp-executable', default=None, help='Path of LAMMPS [beside this Python].')
@click.option('--python-executable', default=None, help='Python with aiida-pfd installed [this Python].')
@click.option(
    '--pseudo-dir',
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help='Directory of UPF files for the PFD/Debian/PBE family [/usr/share/espresso/pseudo].',
)
@click.option(
    '--caching/--no-caching',
    default=None,
    help='Turn AiiDA caching on (or off) for the PFD and pw.x calculations of the profile, so that a re-run re-uses '
    'identical DFT labels and trainings. Default: ask in a terminal, else leave it as it is.',
)
@click.option('--no-daemon', is_flag=True, help='Do not start the daemon.')
@click.option('--workers', type=int, default=1, show_default=True, help='Daemon workers to start.')
@click.pass_context
def cmd_setup(
    ctx,
    profile_name,
    email,
    broker,
    use_postgres,
    postgres_hostname,
    postgres_port,
    postgres_username,
    postgres_password,
    computer_label,
    mpiprocs,
    pw_executable,
    dp_executable,
    lmp_executable,
    python_executable,
    pseudo_dir,
    caching,
    no_daemon,
    workers,
):
    """Create or reuse a profile with a computer, the pw/dp/lmp/python codes and the PFD/Debian/PBE pseudo family.

    Running it again changes nothing and says so. With `-p/--profile` an existing profile (e.g. PostgreSQL + RabbitMQ)
    is used instead of `--profile-name`; with `--computer` the codes go on an existing computer instead of localhost.
    Without `--caching/--no-caching` it asks whether to turn caching on, in a terminal, where it is off.
    """
    from aiida.manage.configuration import load_profile
    from tabulate import tabulate

    from ..caching import HOW_TO_ENABLE, ensure_caching, is_caching_enabled
    from ..provision import Outcome, Status
    from ..provision.codes import default_executables, default_specs, ensure_code
    from ..provision.computer import ensure_localhost, load_existing
    from ..provision.daemon import ensure_daemon
    from ..provision.profile import ensure_profile, postgres_storage_config
    from ..provision.pseudos import DEBIAN_PSEUDO_DIR, ensure_family

    config = ctx.obj.config
    if _profile_given_on_command_line(ctx):
        profile_name = ctx.obj.profile.name

    storage = {}
    if use_postgres and profile_name not in config.profile_names:
        try:
            storage = {
                'storage_backend': 'core.psql_dos',
                'storage_config': postgres_storage_config(
                    profile_name,
                    postgres_hostname=postgres_hostname,
                    postgres_port=postgres_port,
                    postgres_username=postgres_username,
                    postgres_password=postgres_password,
                    non_interactive=True,
                ),
            }
        except ConnectionError as exception:
            echo.echo_critical(str(exception))

    try:
        profile, outcome = ensure_profile(config, profile_name, email=email, broker=broker, **storage)
    except ConnectionError as exception:
        echo.echo_critical(f'{exception} (choose another `--broker`)')
    outcomes = [outcome]
    load_profile(profile.name, allow_switch=True)

    if caching is None and sys.stdin.isatty() and not is_caching_enabled(profile.name, config):
        caching = click.confirm(
            'Turn on caching, so that re-running an identical workflow re-uses its DFT labels and trainings?',
            default=False,
        )
    caching_outcome = ensure_caching(caching, profile.name, config)

    try:
        if computer_label:
            computer, outcome = load_existing(computer_label)
        else:
            workdir = pathlib.Path(config.dirpath) / 'scratch' / profile.name
            computer, outcome = ensure_localhost(workdir, mpiprocs=mpiprocs)
    except ValueError as exception:
        echo.echo_critical(str(exception))
    outcomes.append(outcome)

    executables = default_executables() if computer.hostname == 'localhost' else dict.fromkeys(('pw', 'dp', 'lmp'))
    overrides = {'pw': pw_executable, 'dp': dp_executable, 'lmp': lmp_executable, 'python': python_executable}
    executables.update({label: path for label, path in overrides.items() if path})
    for spec in default_specs(executables):
        if isinstance(spec, str):
            detail = f'executable unknown: pass --{spec}-executable'
            outcomes.append(Outcome('code', f'{spec}@{computer.label}', Status.WARNING, detail))
        else:
            outcomes.append(ensure_code(spec, computer)[1])

    try:
        outcomes.append(ensure_family(pseudo_dir or DEBIAN_PSEUDO_DIR)[1])
    except (FileNotFoundError, ValueError) as exception:
        outcomes.append(Outcome('pseudo family', 'PFD/Debian/PBE', Status.WARNING, str(exception)))

    outcomes.append(caching_outcome)

    if no_daemon:
        outcomes.append(Outcome('daemon', profile.name, Status.SKIPPED, '--no-daemon'))
    else:
        outcomes.append(ensure_daemon(profile, workers=workers))

    echo.echo(tabulate([o.as_row() for o in outcomes], headers=['what', 'label', 'status', 'detail']))
    echo.echo('')
    warnings = [o for o in outcomes if o.status is Status.WARNING]
    if not any(o.status.is_change for o in outcomes):
        echo.echo_success(f'Nothing changed: profile `{profile.name}` was already set up.')
    else:
        echo.echo_success(f'Profile `{profile.name}` is set up. Try `verdi -p {profile.name} code list`.')
    if caching_outcome.status is Status.SKIPPED:
        echo.echo_report(HOW_TO_ENABLE)
    elif caching_outcome.status.is_change and outcomes[-1].status is Status.UNCHANGED:
        echo.echo_warning(
            f'The daemon was running: `verdi -p {profile.name} daemon restart` applies the caching change.'
        )
    if warnings:
        echo.echo_warning(f'{len(warnings)} item(s) need attention, see the table above.')
        ctx.exit(1)
