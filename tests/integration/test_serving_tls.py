"""`flywheel serve` over HTTPS (a self-signed certificate made with `cryptography`), with API
tokens on /predict, /feedback and /dashboard (serving.auth) and a limit of requests in flight
per client (serving.max_concurrent_per_client), as a real server on a free port."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flywheel import Project
from flywheel.demo import free_port
from tests.conftest import CHURN, make_project
from tests.integration.conftest import ADMIN_TOKEN, REPO

pytestmark = pytest.mark.slow

FAST = {"learners": ["linear"], "cv_folds": 2, "search": {"trials": 2, "seed": 0}}
TOKENS = "tok-a,tok-b"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def first_record(project: Project) -> dict[str, object]:
    frame = pd.read_parquet(CHURN)[project.schema.feature_columns].head(1)
    record: dict[str, object] = json.loads(frame.to_json(orient="records"))[0]
    return record


def serve(root: Path, port: int, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli.main", "serve", "--config", str(root), "--port",
         str(port), "--poll-interval", "0.3", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), "FLYWHEEL_ADMIN_TOKEN": ADMIN_TOKEN,
             "FLYWHEEL_API_TOKENS": TOKENS, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Project]]:
    root = tmp_path_factory.mktemp("tls")
    project = make_project(root, training=FAST)
    project.train()
    cert, key = self_signed(root)
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    raw["serving"] = {**raw.get("serving", {}), "ssl_certfile": "cert.pem",
                      "ssl_keyfile": "key.pem", "max_concurrent_per_client": 2,
                      "auth": {"endpoints": ["predict", "feedback", "dashboard"]}}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw))
    port = free_port()
    proc = serve(root, port)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        try:
            if httpx.get(url + "/readyz", verify=str(cert), timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "flywheel serve over TLS was not ready in time"
        time.sleep(0.3)
    yield url, cert, Project.load(root)
    proc.terminate()
    proc.wait(timeout=30)


def test_the_server_answers_https_verified_by_its_certificate_and_refuses_plain_http(
        server: tuple[str, Path, Project]) -> None:
    url, cert, project = server
    record = first_record(project)
    answer = httpx.post(url + "/predict", json=record, verify=str(cert),
                        headers={"Authorization": "Bearer tok-b"})
    assert answer.status_code == 200, answer.text
    with pytest.raises(httpx.HTTPError):  # a client that does not trust it stops
        httpx.get(url + "/readyz", timeout=5)
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no HTTP answer
        httpx.get(url.replace("https", "http") + "/readyz", timeout=5)


def test_predict_feedback_and_the_dashboard_need_a_token_over_tls(
        server: tuple[str, Path, Project]) -> None:
    url, cert, project = server
    record = first_record(project)
    with httpx.Client(base_url=url, verify=str(cert), timeout=30) as client:
        refused = client.post("/predict", json=record)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert client.post("/predict", json=record,
                           headers={"Authorization": "Bearer tok-c"}).status_code == 401
        answer = client.post("/predict", json=record, headers={"Authorization": "Bearer tok-a"})
        assert answer.status_code == 200
        label = {"request_id": answer.json()["request_id"], "label": "no"}
        assert client.post("/feedback", json=label).status_code == 401
        assert client.post("/feedback", json=label,
                           headers={"Authorization": "Bearer tok-a"}).status_code == 202
        assert client.get("/dashboard.json").status_code == 401
        for token in ("tok-a", ADMIN_TOKEN):  # an API token, or the admin token
            page = client.get("/dashboard.json", headers={"Authorization": f"Bearer {token}"})
            assert page.status_code == 200
            assert page.json()["served"] == {"champion": "1"}
        assert client.get(f"/dashboard?token={ADMIN_TOKEN}").status_code == 200
        assert client.get("/readyz").status_code == 200  # probes stay open


def _held_request(url: str, cert: Path) -> ssl.SSLSocket:
    """A /predict whose body never finishes arriving: in flight until the socket closes."""
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(cert))
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                               server_hostname="127.0.0.1")
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok-a\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    return sock


def test_a_client_with_two_requests_in_flight_gets_429_with_retry_after_until_one_ends(
        server: tuple[str, Path, Project]) -> None:
    url, cert, project = server
    record = first_record(project)
    auth = {"Authorization": "Bearer tok-a"}
    held = [_held_request(url, cert) for _ in range(2)]
    try:
        time.sleep(0.5)
        over = httpx.post(url + "/predict", json=record, headers=auth, verify=str(cert))
        assert over.status_code == 429
        assert over.headers["retry-after"] == "1"
        assert "max_concurrent_per_client" in over.json()["error"]
        assert httpx.get(url + "/readyz", verify=str(cert)).status_code == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        status = httpx.post(url + "/predict", json=record, headers=auth,
                            verify=str(cert)).status_code
        if status == 200:
            break
        assert status == 429 and time.monotonic() < deadline
        time.sleep(0.2)


def test_a_key_that_is_not_the_certificates_is_a_config_error_before_serving(
        server: tuple[str, Path, Project], tmp_path: Path) -> None:
    _, cert, project = server
    _, other_key = self_signed(tmp_path)
    proc = serve(Path(project.spec.root), free_port(), "--ssl-certfile", str(cert),
                 "--ssl-keyfile", str(other_key))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "cannot serve HTTPS with certificate" in out
    assert "Traceback" not in out


def test_serving_auth_without_tokens_in_its_variable_is_a_config_error(
        server: tuple[str, Path, Project]) -> None:
    _, _, project = server
    proc = serve(Path(project.spec.root), free_port(), env={"FLYWHEEL_API_TOKENS": ""})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "$FLYWHEEL_API_TOKENS holds no token" in out
