"""The one place the trainer reaches the synthetic generators.

The generators live in ``skysentry/synthetic.py`` (they started in ``producers/``); only
:func:`synthetic_module` knows where (DESIGN §1: the trainer imports the kernel,
and the generators are moving into it).
"""

from __future__ import annotations

from types import ModuleType


def synthetic_module() -> ModuleType:
    """The module with ``SyntheticScene`` and ``synthetic_audio``."""
    from skysentry import synthetic

    return synthetic
