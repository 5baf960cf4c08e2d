"""The feature store: feature views keyed by entity and time, point-in-time training sets,
an online store that serving reads, and view versions pinned per model.

DuckDB is the join engine (ASOF JOIN); the online store is SQLite in ``.flywheel/features/``
or Redis (``feature_store.online: redis://...``, ``pip install flywheel[redis]``).
"""

from __future__ import annotations

from flywheel.featurestore._catalog import FeatureCatalog, ViewVersion
from flywheel.featurestore._lookup import FeatureJoiner, JoinGroup
from flywheel.featurestore._materialize import MaterializeResult
from flywheel.featurestore._online import OnlineStore, SqliteOnlineStore, create_online_store
from flywheel.featurestore._online_redis import RedisOnlineStore
from flywheel.featurestore._pit import JoinReport, join_frame, join_to_parquet
from flywheel.featurestore._store import PINS_TAG, FeatureStore, join_spine, pins_tag, read_pins

__all__ = [
    "PINS_TAG",
    "FeatureCatalog",
    "FeatureJoiner",
    "FeatureStore",
    "JoinGroup",
    "JoinReport",
    "MaterializeResult",
    "OnlineStore",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "ViewVersion",
    "create_online_store",
    "join_frame",
    "join_spine",
    "pins_tag",
    "join_to_parquet",
    "read_pins",
]
