"""The same registry round trip against a real PostgreSQL 15 backend."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # PostgreSQL cluster + its own MLflow server

from tests.servers import start_mlflow_server, start_postgres
from tests.tracking.helpers import registry_round_trip


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg")
    pg = start_postgres(tmp)
    try:
        server = start_mlflow_server(tmp, backend_uri=pg.uri)
    except BaseException:
        pg.stop()
        raise
    yield server
    server.stop()
    pg.stop()


def test_registry_round_trip_on_postgres(pg_server, fast_settings, tmp_path):
    assert pg_server.backend_uri.startswith("postgresql+psycopg2://")
    registry_round_trip(pg_server.url, fast_settings, tmp_path, model_key="pgnet")
