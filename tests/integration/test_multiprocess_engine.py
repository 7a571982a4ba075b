from __future__ import annotations

import pytest
from engine_conformance import EngineConformance

from zoopipe_hpc.engines import MultiProcessEngine


class TestMultiProcessEngine(EngineConformance):
    timeout = 60.0

    @pytest.fixture
    def engine(self) -> MultiProcessEngine:
        return MultiProcessEngine()


class TestMultiProcessEngineLimited(EngineConformance):
    """The same promises when fewer processes than pipes may run at once."""

    timeout = 60.0

    @pytest.fixture
    def engine(self) -> MultiProcessEngine:
        return MultiProcessEngine(max_workers=1)
