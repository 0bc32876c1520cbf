"""The ``aiida-pfd`` command line interface."""

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.params import options, types


@click.group('aiida-pfd', cls=VerdiCommandGroup, context_settings={'help_option_names': ['-h', '--help']})
@options.PROFILE(type=types.ProfileParamType(load_profile=True), expose_value=False)
@options.VERBOSITY()
def cmd_root():
    """Generate material-specific force fields from universal models: pre-train, fine-tune, distil."""


from . import cmd_models, cmd_setup, cmd_summary  # noqa: E402, F401
