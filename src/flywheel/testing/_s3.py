"""A local S3-compatible object store: moto's server mode on a loopback port.

It stands in for S3 (or MinIO, GCS's S3 API) where tests need an object store: MLflow's proxied
artifacts, a prediction log on ``s3://``, backups. Clients reach it through the usual variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_S3_ENDPOINT_URL`` or an endpoint
override), set by ``env()``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from flywheel.demo import free_port

__all__ = ["S3Server"]


class S3Server:
    """``moto_server`` on a free loopback port, with its log under ``root``.

    Args:
        root: A folder for the server's log.
        buckets: Buckets to create once it is up.

    Use as a context manager; ``endpoint`` is the URL clients point at.
    """

    access_key = "testing-access-key"
    secret_key = "testing-secret-key"
    region = "us-east-1"

    def __init__(self, root: Path, *, buckets: tuple[str, ...] = ("flywheel",)) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.buckets = buckets
        self.log_file = root / "moto-s3.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The variables boto3, pyarrow and MLflow read to reach this store."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, *, timeout: float = 60.0) -> S3Server:
        """Start the server, wait until it answers, create the buckets."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=log, env={**os.environ, **self.env()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}; "
                                   f"see {self.log_file}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"moto server not up within {timeout:.0f} s; see {self.log_file}")
        for bucket in self.buckets:
            self.create_bucket(bucket)
        return self

    def client(self) -> Any:
        """A boto3 S3 client for this store."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def create_bucket(self, name: str) -> None:
        """Create ``name`` (no error if it exists)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        """Stop the server."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
