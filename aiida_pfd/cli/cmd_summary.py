"""``aiida-pfd summary``: the figures of a PFD run as tables."""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments

from . import cmd_root


@cmd_root.command('summary')
@arguments.PROCESS()
def cmd_summary(process):
    """Summarize a finished PFDWorkChain PROCESS: DFT calculations, iterations, test errors, speed-up, models."""
    from aiida_pfd.summary import print_summary

    if process.process_label != 'PFDWorkChain':
        raise click.BadParameter(f'{process.process_label}<{process.pk}> is not a PFDWorkChain.', param_hint='PROCESS')
    print_summary(process, echo=click.echo)
