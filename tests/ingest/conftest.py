from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from exporter_helpers import Exporter


@pytest.fixture
def exporter_factory() -> Iterator[Callable[[], Exporter]]:
    made: list[Exporter] = []

    def make() -> Exporter:
        e = Exporter()
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()
