"""A stand-in for the Application Load Balancer's sign-on: its ES256 key pair, its regional key endpoint (a local HTTP
server serving the PEM public key by key id, as ``public-keys.auth.elb.<region>.amazonaws.com/<kid>`` does), and the
``x-amzn-oidc-data`` tokens it signs, base64url *with* padding as the load balancer writes them."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/intervalprocessing-ui/0123456789abcdef"
OTHER_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/someone-else/fedcba9876543210"


def _b64(data: bytes, padded: bool = True) -> str:
    encoded = base64.urlsafe_b64encode(data).decode()  # padded, as the load balancer writes it
    return encoded if padded else encoded.rstrip("=")


@dataclass
class StandInLoadBalancer:
    key_endpoint: str
    kid: str
    key: ec.EllipticCurvePrivateKey
    key_requests: list[str] = field(default_factory=list)

    def token(
        self,
        *,
        sub: str = "3f1c9a2e-0000-4000-8000-000000000001",
        email: str | None = "alice@example.com",
        expires_in: float = 120,
        signer: str = ARN,
        key: ec.EllipticCurvePrivateKey | None = None,
        alg: str = "ES256",
        padded: bool = True,
        client: str = "operator-client",
    ) -> str:
        exp = int(time.time() + expires_in)
        header = {
            "alg": alg,
            "kid": self.kid,
            "signer": signer,
            "iss": "https://idp.example.com",
            "client": client,
            "exp": exp,
        }
        payload: dict[str, Any] = {"sub": sub, "exp": exp, "iss": "https://idp.example.com"}
        if email:
            payload["email"] = email
        signing_input = f"{_b64(json.dumps(header).encode(), padded)}.{_b64(json.dumps(payload).encode(), padded)}"
        der = (key or self.key).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'), padded)}"


@contextmanager
def stand_in_load_balancer() -> Iterator[StandInLoadBalancer]:
    """A key pair made here and its key endpoint on 127.0.0.1 (404 for any other key id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    kid = str(uuid.uuid4())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    requests_seen: list[str] = []

    class KeyEndpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests_seen.append(self.path)
            found = self.path == f"/{kid}"
            self.send_response(200 if found else 404)
            self.end_headers()
            if found:
                self.wfile.write(pem)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeyEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandInLoadBalancer(f"http://127.0.0.1:{server.server_address[1]}", kid, key, requests_seen)
    finally:
        server.shutdown()
        server.server_close()
