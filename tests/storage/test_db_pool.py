"""`create_engine_for(url, pool_size=N)`: a server database's connections capped at N, with no overflow."""

from __future__ import annotations


import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage import db


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_small_pool_never_opens_more_connections_than_its_size(database_url):
    engine = db.create_engine_for(database_url, pool_size=2)
    engine.pool._timeout = 0.5  # how long a third caller waits for a free connection here
    try:
        first, second = engine.connect(), engine.connect()
        with pytest.raises(PoolTimeout):
            engine.connect()  # SQLAlchemy's default would open a third (and up to 15)
        second.close()
        with engine.connect() as third:
            assert third.execute(text("select 1")).scalar() == 1
        first.close()
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_without_a_size_the_default_pool_stays(database_url):
    engine = db.create_engine_for(database_url)
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (5, 10)
    finally:
        engine.dispose()
