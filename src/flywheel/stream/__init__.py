"""Stream scoring: events from a broker (Redis Streams) scored in micro-batches through the
serving model store, predictions written keyed by event id, acknowledged only once written."""

from __future__ import annotations

from flywheel.stream._folder import ParquetFolderSink, read_folder_ids
from flywheel.stream._metrics import StreamMetrics
from flywheel.stream._redis import (
    RedisStreamSink,
    RedisStreamSource,
    RedisTarget,
    encode_prediction,
    parse_redis_url,
)
from flywheel.stream._scorer import RECORD_FIELDS, StreamScorer, parse_record
from flywheel.stream.base import DeadLetter, Event, Prediction, PredictionSink, StreamSource

__all__ = [
    "RECORD_FIELDS",
    "DeadLetter",
    "Event",
    "ParquetFolderSink",
    "Prediction",
    "PredictionSink",
    "RedisStreamSink",
    "RedisStreamSource",
    "RedisTarget",
    "StreamMetrics",
    "StreamScorer",
    "StreamSource",
    "encode_prediction",
    "parse_redis_url",
    "parse_record",
    "read_folder_ids",
]
