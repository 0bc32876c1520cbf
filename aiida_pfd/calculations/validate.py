"""``pfd.validate``: a model's equation of state, elastic constants, phonons, vacancy energy and RDF of a cubic crystal.

``parameters`` (all optional):

=====================  ============================================================================================
key                    meaning (default)
=====================  ============================================================================================
``properties``         which of ``eos``, ``elastic``, ``vacancy``, ``phonons``, ``rdf`` (all)
``strain``             strain of the elastic constants (0.01)
``fmax``               force threshold of the ion relaxations in eV/Å (relaxed C44 and vacancy) (0.005)
``vacancy_supercell``  repetition of the cubic cell for the relaxed vacancy ([2, 2, 2])
``phonon_supercell``   repetition of the cubic cell for phonopy's finite displacements ([2, 2, 2])
``rdf``                ``temperature`` (K, 1000), ``time`` (ps, 2.0), ``supercell`` ([2, 2, 2]), ``rmax`` (Å, 5.0)
``seed``               seeds the RDF's MD (0)
=====================  ============================================================================================

``properties`` output (Å, GPa, eV, THz): ``a0``, ``b0``, ``volume_per_atom``; ``c11``, ``c12``, ``c44`` (ions
relaxed), ``c44_unrelaxed``; ``vacancy_unrelaxed`` (2x1x1 cell, as the DFT reference frames),
``vacancy_unrelaxed_large``
and ``vacancy_relaxed_large`` (``vacancy_supercell``); ``phonon_gamma``, ``phonon_x``, ``phonon_l``;
``rdf_first_peak``. ``rdf``: arrays ``r`` and ``g``.
"""

from __future__ import annotations

from aiida import orm

from .script import ScriptCalculation, define_model_inputs, structure_dict, validate_model

PROPERTIES = ('eos', 'elastic', 'vacancy', 'phonons', 'rdf')
DEFAULTS = {
    'properties': list(PROPERTIES),
    'strain': 0.01,
    'fmax': 0.005,
    'vacancy_supercell': [2, 2, 2],
    'phonon_supercell': [2, 2, 2],
    'rdf': {'temperature': 1000.0, 'time': 2.0, 'supercell': [2, 2, 2], 'rmax': 5.0},
    'seed': 0,
}


def check_parameters(parameters: dict) -> str | None:
    unknown = sorted(set(parameters) - set(DEFAULTS))
    if unknown:
        return f'unknown keys {unknown}: the keys are {sorted(DEFAULTS)}.'
    asked = parameters.get('properties', list(PROPERTIES))
    if not isinstance(asked, list) or not asked or set(asked) - set(PROPERTIES):
        return f'`properties` is {asked!r}: give a non-empty list of {list(PROPERTIES)}.'
    for key in ('vacancy_supercell', 'phonon_supercell'):
        value = parameters.get(key, [2, 2, 2])
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(n, int) and n >= 1 for n in value)):
            return f'`{key}` is {value!r}: give three integers >= 1.'
    unknown = sorted(set(parameters.get('rdf', {})) - set(DEFAULTS['rdf']))
    if unknown:
        return f'`rdf` has unknown keys {unknown}: the keys are {sorted(DEFAULTS["rdf"])}.'
    return None


def validate_parameters(value, _) -> str | None:
    problem = check_parameters(value.get_dict()) if value is not None else None
    return f'`parameters`: {problem}' if problem else None


def validate_inputs(inputs, _) -> str | None:
    structure = inputs.get('structure')
    if structure is None or 'model' not in inputs:
        return None
    import numpy as np

    cell = np.array(structure.cell)
    if not np.allclose(cell, np.eye(3) * cell[0, 0], atol=1e-6):
        return '`structure`: give the cubic conventional cell (e.g. ase.build.bulk(..., cubic=True)).'
    return validate_model(inputs['model'], inputs.get('model_head'), 'structure', structure.get_symbols_set())


class ValidateCalculation(ScriptCalculation):
    """Compute the properties of a cubic crystal with a model (schema: the module docstring)."""

    SCRIPT = 'validate'
    RETRIEVE = ['results.json', 'rdf.npy']

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'pfd.validate'
        define_model_inputs(spec, help='The model whose properties are computed.')
        spec.input('structure', valid_type=orm.StructureData, help='The cubic conventional cell of the crystal.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            validator=validate_parameters,
            help='Which properties and their settings: see the module docs.',
        )
        spec.inputs.validator = validate_inputs
        spec.output('properties', valid_type=orm.Dict, help='The properties (Å, GPa, eV, THz).')
        spec.output('rdf', valid_type=orm.ArrayData, required=False, help='Arrays `r` (Å) and `g`.')

    def script_parameters(self) -> dict:
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        merged = {**DEFAULTS, **parameters, 'rdf': {**DEFAULTS['rdf'], **parameters.get('rdf', {})}}
        return {'model': self.model_parameters(), 'structure': structure_dict(self.inputs.structure), **merged}
