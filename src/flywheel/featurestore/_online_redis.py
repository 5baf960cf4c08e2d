"""The online store in Redis (``feature_store.online: redis://...``, ``pip install
flywheel[redis]``): a hash per entity, the same layout and contract as the SQLite store."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import ConfigError, FeatureStoreError

if TYPE_CHECKING:
    from flywheel.featurestore._online import Row

__all__ = ["RedisOnlineStore"]


class RedisOnlineStore:
    """The online store in Redis: a hash per entity (``fw:<project>:<table>:<key>``).

    Args:
        url: redis://HOST:PORT/DB.
        namespace: Keeps projects sharing a Redis apart (the project name).
        timeout: Seconds a command may take before Redis counts as down.
    """

    def __init__(self, url: str, namespace: str, *, timeout: float = 1.0) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigError("feature_store.online is a redis:// URL, which needs the Redis "
                              "client: pip install flywheel[redis]") from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
        self.where = _without_password(url)
        self.prefix = f"fw:{namespace}:"

    def _fail(self, exc: BaseException, doing: str) -> FeatureStoreError:
        return FeatureStoreError(f"the Redis online store {self.where} failed while {doing} "
                                 f"({type(exc).__name__}: {exc}); check that it runs and "
                                 "feature_store.online points at it.")

    def write_chunk(self, table: str, column: str, rows: Iterable[Row], *, run: str,
                    chunk: int) -> int:
        t = column + "__t"
        changed = 0
        items = iter(rows)
        try:
            while part := list(itertools.islice(items, 10_000)):
                names = [f"{self.prefix}{table}:{key}" for key, _, _ in part]
                pipe = self.client.pipeline(transaction=False)
                for name in names:
                    pipe.hget(name, t)
                current = pipe.execute()
                pipe = self.client.pipeline(transaction=False)
                for name, (_, when, value), old in zip(names, part, current, strict=True):
                    if old is None or when >= float(old):
                        pipe.hset(name, mapping={column: value, t: repr(when)})
                        changed += 1
                pipe.execute()
            self.client.sadd(f"{self.prefix}_chunks:{run}", chunk)
        except self._errors as exc:
            raise self._fail(exc, "writing a chunk") from exc
        return changed

    def done_chunks(self, run: str) -> set[int]:
        try:
            members = self.client.smembers(f"{self.prefix}_chunks:{run}")
        except self._errors as exc:
            raise self._fail(exc, "reading materialization progress") from exc
        return {int(m) for m in members}

    def read(self, table: str, columns: Sequence[str],
             keys: Sequence[str]) -> list[list[bytes | None]]:
        """Raises: FeatureStoreError: if Redis does not answer (serving counts misses)."""
        try:
            if len(keys) == 1:
                found: list[Any] = [self.client.hmget(f"{self.prefix}{table}:{keys[0]}",
                                                      list(columns))]
                return found
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(f"{self.prefix}{table}:{key}", list(columns))
            found = list(pipe.execute())
            return found
        except self._errors as exc:
            raise self._fail(exc, "reading features") from exc

    def read_joined(self, table: str, packed: Sequence[str], arrays: Sequence[str],
                    keys: Sequence[str]) -> list[tuple[bytes, bytes | str] | None]:
        """Raises: FeatureStoreError: if Redis does not answer (serving counts misses)."""
        laid: list[tuple[bytes, bytes | str] | None] = []
        split = len(packed)
        for blobs in self.read(table, [*packed, *arrays], keys):
            held = [blob for blob in blobs if blob is not None]
            laid.append(None if len(held) < len(blobs) else (
                b"".join(held[:split]),
                b"[" + b",".join(blob[1:-1] for blob in held[split:]) + b"]"))
        return laid

    def get_meta(self, name: str) -> str | None:
        try:
            value = self.client.hget(f"{self.prefix}_meta", name)
        except self._errors as exc:
            raise self._fail(exc, "reading materialization state") from exc
        return None if value is None else bytes(value).decode()  # type: ignore[arg-type]

    def set_meta(self, name: str, value: str | None) -> None:
        try:
            if value is None:
                self.client.hdel(f"{self.prefix}_meta", name)
            else:
                self.client.hset(f"{self.prefix}_meta", name, value)
        except self._errors as exc:
            raise self._fail(exc, "writing materialization state") from exc

    def close(self) -> None:
        self.client.close()


def _without_password(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in credentials else url
