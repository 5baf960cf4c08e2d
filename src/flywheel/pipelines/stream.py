"""Putting stream scoring together for a project: the source and sink from their URLs, the
serving model store (hot swap and rollouts), the prediction log and the metrics endpoint."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from types import FrameType

from flywheel.core.errors import ConfigError
from flywheel.featurestore import FeatureStore
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predlog import log_location, spool_folder
from flywheel.serving import ModelStore, PredictionLog
from flywheel.stream import (
    ParquetFolderSink,
    PredictionSink,
    RedisStreamSink,
    RedisStreamSource,
    StreamMetrics,
    StreamScorer,
    parse_redis_url,
)

__all__ = ["MAX_BATCH", "StreamOptions", "build_scorer", "run_stream"]

MAX_BATCH = 10_000
"""Most events per micro-batch: what the input checker takes in one call."""


@dataclass(frozen=True)
class StreamOptions:
    """What `flywheel stream` was asked to do."""

    source: str
    """redis://HOST:PORT/STREAM"""
    group: str
    output: str | None = None
    """redis://HOST:PORT/STREAM (same server as the source), a folder, or None:
    ``<source stream>:predictions`` beside the source."""
    consumer: str | None = None
    """This process's name in the group; default HOST-PID (a restart is a new consumer,
    which takes over the dead one's pending events)."""
    dead_letter: str | None = None
    batch: int = 500
    block_ms: int = 100
    claim_idle_ms: int = 30_000
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    poll_interval: float = 2.0
    log_predictions: bool = True


def build_scorer(project: ProjectContext, options: StreamOptions) -> StreamScorer:
    """The scorer for ``project`` reading ``options.source`` (not started).

    Raises:
        ConfigError: If a URL is malformed, the server does not answer, the output is a Redis
            stream on another server, or the batch is out of range.
    """
    if not 1 <= options.batch <= MAX_BATCH:
        raise ConfigError(f"--batch {options.batch} is out of range; give 1 to "
                          f"{MAX_BATCH} events per micro-batch.")
    target = parse_redis_url(options.source)
    consumer = options.consumer or f"{socket.gethostname()}-{os.getpid()}"
    source = RedisStreamSource(target, group=options.group, consumer=consumer,
                               claim_idle_ms=options.claim_idle_ms,
                               dead_letter=options.dead_letter)
    sink: PredictionSink
    if options.output is None or options.output.startswith(("redis://", "rediss://")):
        out = parse_redis_url(options.output, what="--output") if options.output else \
            parse_redis_url(f"{target.url}/{target.stream}:predictions")
        sink = RedisStreamSink(out, source)
    else:
        sink = ParquetFolderSink(project.spec.resolve(options.output),
                                 pending=source.pending_ids())
    project.workspace.ensure()
    features = FeatureStore(project.spec, project.workspace) \
        if project.spec.feature_store.views else None
    store = ModelStore(project.registry(), poll_interval=options.poll_interval,
                       features=features, allow_pickle=project.spec.training.allow_pickle,
                       runtime=project.spec.serving.runtime)
    prediction_log = PredictionLog(log_location(project), spool=spool_folder(project)) \
        if options.log_predictions else None
    metrics = StreamMetrics(target.stream)
    return StreamScorer(source, sink, store, prediction_log=prediction_log, metrics=metrics,
                        batch=options.batch, block_ms=options.block_ms)


def run_stream(project: ProjectContext, options: StreamOptions) -> int:
    """Score until SIGTERM or SIGINT; returns the events settled.

    The model store polls the registry (a promotion or rollout applies from the next batch),
    the prediction log flushes in the background, and on a signal the current batch finishes
    before the log is flushed and closed.
    """
    scorer = build_scorer(project, options)
    if options.metrics_port is not None:
        scorer.metrics.serve(options.metrics_port, options.metrics_host)
    store = scorer.store
    store.reconcile()
    store.start()
    if scorer.log is not None:
        scorer.log.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        scorer.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return scorer.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        store.stop()
        if scorer.log is not None:
            scorer.log.close()
        scorer.sink.close()
        scorer.source.close()
