"""End-to-end tests' own marker: ``model_quality`` tests judge the shipped model on real clips,
not the pipeline's mechanics (``pytest -m model_quality`` runs only them)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model_quality: judges the shipped model on real field clips (samples/), "
                            "not the pipeline's mechanics; skipped while the shipped vision model is drone-only")
