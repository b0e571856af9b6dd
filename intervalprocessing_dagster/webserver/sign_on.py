"""Who is asking: the load balancer's signed ``x-amzn-oidc-data`` token, verified before anything trusts it.

The Application Load Balancer signs the signed-in person's claims itself (ES256, its key published by key id); AWS
pads the base64url segments, which JWT libraries reject, so this module decodes and verifies them itself. A token is
accepted only with algorithm ES256, the configured load balancer as ``signer``, the configured sign-in client (when
one is), a signature that verifies with the key fetched for its ``kid``, and no expiry (:data:`CLOCK_SKEW_SECONDS`
allowed); keys are cached per ``kid``. The token's format and each rule's reason:
docs/decisions/webserver-sign-on-and-audit.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

#: The header the load balancer adds to every request it forwards after a sign-in.
TOKEN_HEADER = "x-amzn-oidc-data"
#: How far the webserver's clock may be behind the load balancer's before a fresh token looks expired.
CLOCK_SKEW_SECONDS = 30
#: A key id is a path segment of the key endpoint's URL: nothing that could change the URL is accepted.
_KID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_KEY_FETCH_TIMEOUT_SECONDS = 5
_MAX_CACHED_KEYS = 64


class SignOnError(Exception):
    """The request's token is missing or cannot be trusted; the message says why (it never quotes the token)."""


@dataclass(frozen=True)
class Identity:
    """The signed-in person as the load balancer vouches for them."""

    subject: str
    email: str | None

    @property
    def who(self) -> str:
        """What audit lines and run tags name the person by: the email, else the identity provider's subject."""
        return self.email or self.subject


class AlbTokenVerifier:
    """Verifies ``x-amzn-oidc-data`` tokens signed by one load balancer, with keys from one endpoint."""

    def __init__(
        self,
        load_balancer_arn: str,
        key_endpoint: str,
        *,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = load_balancer_arn
        self._client_id = client_id
        self._key_endpoint = key_endpoint.rstrip("/")
        self._clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._lock = threading.Lock()

    def verify(self, token: str | None) -> Identity:
        """The person the token names, or :class:`SignOnError` saying why it is refused."""
        if not token:
            raise SignOnError(f"no {TOKEN_HEADER} header: the request did not come through the load balancer's sign-in")
        parts = token.split(".")
        if len(parts) != 3:
            raise SignOnError(f"{TOKEN_HEADER} is not a signed token (three dot-separated parts)")
        header = _json_segment(parts[0], "header")
        payload = _json_segment(parts[1], "payload")
        if header.get("alg") != "ES256":
            raise SignOnError(f"{TOKEN_HEADER} is signed with {header.get('alg')!r}, not ES256")
        if header.get("signer") != self._signer:
            raise SignOnError(f"{TOKEN_HEADER} was signed by {header.get('signer')!r}, not this load balancer")
        if self._client_id is not None and header.get("client") != self._client_id:
            raise SignOnError(f"{TOKEN_HEADER} is from sign-in client {header.get('client')!r}, not this UI's")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise SignOnError(f"{TOKEN_HEADER} has no usable key id")
        signature = _segment_bytes(parts[2], "signature")
        if len(signature) != 64:
            raise SignOnError(f"{TOKEN_HEADER}'s signature is not an ES256 signature")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            self._key(kid).verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignOnError(f"{TOKEN_HEADER}'s signature does not verify with the load balancer's key") from None
        self._check_expiry(header, payload)
        subject = payload.get("sub")
        if not isinstance(subject, str) or not subject:
            raise SignOnError(f"{TOKEN_HEADER} names no subject (sub)")
        email = payload.get("email")
        return Identity(subject=subject, email=email if isinstance(email, str) and email else None)

    def _check_expiry(self, header: dict[str, Any], payload: dict[str, Any]) -> None:
        expiries = [value for value in (header.get("exp"), payload.get("exp")) if value is not None]
        if not expiries:
            raise SignOnError(f"{TOKEN_HEADER} has no expiry (exp)")
        for value in expiries:
            try:
                expires = float(value)
            except (TypeError, ValueError):
                raise SignOnError(f"{TOKEN_HEADER}'s expiry {value!r} is not a time") from None
            if expires + CLOCK_SKEW_SECONDS < self._clock():
                raise SignOnError(f"{TOKEN_HEADER} expired at {expires:.0f}")

    def _key(self, kid: str) -> ec.EllipticCurvePublicKey:
        with self._lock:
            cached = self._keys.get(kid)
        if cached is not None:
            return cached
        url = f"{self._key_endpoint}/{kid}"
        try:
            # The endpoint is configuration (HTTPS; settings.py allows plain HTTP only to this host).
            with urllib.request.urlopen(url, timeout=_KEY_FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
                pem = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise SignOnError(f"the load balancer's key {kid} could not be fetched from {url}: {exc}") from None
        try:
            key = load_pem_public_key(pem)
        except ValueError:
            raise SignOnError(f"{url} did not return a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise SignOnError(f"{url} returned a key that is not P-256")
        with self._lock:
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[kid] = key
        return key


def _segment_bytes(segment: str, what: str) -> bytes:
    """A base64url segment, padded or not (the load balancer pads; JWT proper does not)."""
    stripped = segment.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise SignOnError(f"{TOKEN_HEADER}'s {what} is not base64url") from None


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_segment_bytes(segment, what))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SignOnError(f"{TOKEN_HEADER}'s {what} is not JSON") from None
    if not isinstance(value, dict):
        raise SignOnError(f"{TOKEN_HEADER}'s {what} is not a JSON object")
    return value
