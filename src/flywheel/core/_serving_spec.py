"""The ``serving:`` section of flywheel.yaml: what form of a version answers requests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flywheel.core._section import Section as _Section

__all__ = ["ServingAuthSpec", "ServingSpec"]

AuthEndpoint = Literal["predict", "feedback", "dashboard"]


class ServingAuthSpec(_Section):
    """Bearer tokens for the request endpoints (admin endpoints keep the admin token)."""

    endpoints: tuple[AuthEndpoint, ...] = ()
    """Endpoints that need `Authorization: Bearer <token>`: predict (also the Open Inference
    Protocol's infer), feedback, dashboard; empty: open (the dashboard then still takes the
    admin token)."""
    token_env: str = Field("FLYWHEEL_API_TOKENS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the accepted tokens, comma-separated (tokens are
    secrets, so they are not written in flywheel.yaml)."""


class ServingSpec(_Section):
    """How `flywheel serve` and `flywheel stream` run a version."""

    runtime: Literal["compiled", "onnx"] = "compiled"
    """compiled: the compiled predictor (the scikit-learn pipeline if its compiled form was not
    verified); onnx: the version's ONNX graph in onnxruntime, verified by `flywheel export onnx`
    (pip install flywheel[onnx]); the latency gate of `flywheel train` measures that form."""
    grpc_port: int | None = Field(None, ge=1, le=65535)
    """`flywheel serve` also serves the Open Inference Protocol v2 over gRPC on this port
    (pip install flywheel[grpc]); `--grpc-port` overrides it; null: HTTP only."""
    auth: ServingAuthSpec = ServingAuthSpec()
    max_concurrent_per_client: int | None = Field(None, ge=1, le=100_000)
    """Requests one client (its address) may have in flight; one more is answered 429 with
    `Retry-After`; null: no limit (health probes and /metrics are never limited)."""
    ssl_certfile: str | None = None
    """PEM certificate chain: `flywheel serve` speaks HTTPS (uvicorn's ssl options);
    `--ssl-certfile` overrides it; relative to flywheel.yaml."""
    ssl_keyfile: str | None = None
    """The certificate's private key (PEM); required with ssl_certfile."""

    @model_validator(mode="after")
    def _tls_pair(self) -> ServingSpec:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("serving.ssl_certfile and serving.ssl_keyfile go together: give "
                             "both (a PEM certificate and its key) or neither")
        return self
