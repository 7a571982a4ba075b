"""Conformance suites: check your own engine or adapter the way the built-in ones are checked.

Each suite is a pytest test class to subclass in a test module; the subclass says how to build
the thing under test (see docs/testing.md)::

    from zoopipe_hpc.testing import InputAdapterConformance

    class TestMyInput(InputAdapterConformance):
        ...

* :class:`EngineConformance` (:mod:`zoopipe_hpc.testing.engines`): engines.
* :class:`InputAdapterConformance` (:mod:`zoopipe_hpc.testing.input_adapters`): inputs.
* :class:`OutputAdapterConformance` (:mod:`zoopipe_hpc.testing.output_adapters`): outputs.
* :class:`CommitStrategyConformance` (:mod:`zoopipe_hpc.testing.strategies`): commit
  strategies.

The suites need pytest (the ``test`` extra); ``import zoopipe_hpc`` never imports this
package. The names above are imported on first use, so that worker processes importing the
test models of :mod:`zoopipe_hpc.testing.data` do not load pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .engines import EngineConformance
    from .input_adapters import InputAdapterConformance
    from .output_adapters import OutputAdapterConformance
    from .strategies import CommitStrategyConformance

__all__ = [
    "EngineConformance",
    "InputAdapterConformance",
    "OutputAdapterConformance",
    "CommitStrategyConformance",
]

#: Where each suite lives.
_SUITES = {
    "EngineConformance": ".engines",
    "InputAdapterConformance": ".input_adapters",
    "OutputAdapterConformance": ".output_adapters",
    "CommitStrategyConformance": ".strategies",
}


__getattr__, __dir__ = lazy_exports(__name__, _SUITES)
