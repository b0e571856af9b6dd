"""The load balancer's sign-on token, verified: a key pair made here and a local key endpoint stand in for the ALB."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from intervalprocessing_dagster.settings import Settings, SettingsError
from intervalprocessing_dagster.webserver.sign_on import AlbTokenVerifier, SignOnError
from tests.webserver.load_balancer import ARN, OTHER_ARN, StandInLoadBalancer, stand_in_load_balancer


@pytest.fixture()
def alb() -> Iterator[StandInLoadBalancer]:
    with stand_in_load_balancer() as stand_in:
        yield stand_in


@pytest.fixture()
def verifier(alb: StandInLoadBalancer) -> AlbTokenVerifier:
    return AlbTokenVerifier(ARN, alb.key_endpoint)


def test_a_valid_token_names_its_person_and_the_key_is_fetched_once(
    alb: StandInLoadBalancer, verifier: AlbTokenVerifier
) -> None:
    identity = verifier.verify(alb.token(email="alice@example.com"))
    assert (identity.who, identity.email) == ("alice@example.com", "alice@example.com")
    without_email = verifier.verify(alb.token(sub="user-42", email=None))
    assert (without_email.who, without_email.subject) == ("user-42", "user-42")
    assert alb.key_requests == [f"/{alb.kid}"]  # cached by key id


def test_a_token_signed_without_padding_verifies_too(alb: StandInLoadBalancer, verifier: AlbTokenVerifier) -> None:
    """The load balancer pads its segments; plain JWT does not. Both are verified as received."""
    assert "=" in alb.token().split(".")[1] or "=" in alb.token(email="bob@example.com").split(".")[1]
    assert verifier.verify(alb.token(padded=False)).who == "alice@example.com"


def _tampered(token: str) -> str:
    """The payload rewritten to name someone else, the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload))
    claims["email"] = "mallory@example.com"
    return ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode(), signature])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no x-amzn-oidc-data header"),
        ("forged payload", "signature does not verify"),
        ("expired", "expired at"),
        ("signed with another key", "signature does not verify"),
        ("another load balancer", f"signed by '{OTHER_ARN}'"),
        ("alg none", "not ES256"),
        ("not a token", "three dot-separated parts"),
    ],
)
def test_a_token_that_cannot_be_trusted_is_refused(
    alb: StandInLoadBalancer, verifier: AlbTokenVerifier, case: str, expected: str
) -> None:
    token = {
        "missing": lambda: None,
        "forged payload": lambda: _tampered(alb.token()),
        "expired": lambda: alb.token(expires_in=-600),
        "signed with another key": lambda: alb.token(key=ec.generate_private_key(ec.SECP256R1())),
        "another load balancer": lambda: alb.token(signer=OTHER_ARN),
        "alg none": lambda: alb.token(alg="none"),
        "not a token": lambda: "alice@example.com",
    }[case]()
    with pytest.raises(SignOnError, match=expected):
        verifier.verify(token)


def test_only_the_configured_clients_tokens_are_accepted(alb: StandInLoadBalancer) -> None:
    """A sign-in with the viewers' client does not open the operators' webserver."""
    operators_only = AlbTokenVerifier(ARN, alb.key_endpoint, client_id="operator-client")
    assert operators_only.verify(alb.token(client="operator-client")).who == "alice@example.com"
    with pytest.raises(SignOnError, match="from sign-in client 'viewer-client'"):
        operators_only.verify(alb.token(client="viewer-client"))


def test_a_key_id_the_endpoint_does_not_know_is_refused(alb: StandInLoadBalancer) -> None:
    alb.kid = "not-a-published-key"
    with pytest.raises(SignOnError, match="could not be fetched"):
        AlbTokenVerifier(ARN, alb.key_endpoint).verify(alb.token())


def test_sign_on_settings_default_the_key_endpoint_to_the_load_balancers_region() -> None:
    settings = Settings.from_env({"WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN": ARN})
    assert settings.webserver_sign_on_key_endpoint == "https://public-keys.auth.elb.us-east-1.amazonaws.com"
    assert Settings.from_env({}).webserver_sign_on_load_balancer_arn is None
    with pytest.raises(SettingsError, match="WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN='arn:aws:s3:::bucket'"):
        Settings.from_env({"WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN": "arn:aws:s3:::bucket"})
    with pytest.raises(SettingsError, match="must be an https:// URL"):
        Settings.from_env(
            {"WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN": ARN, "WEBSERVER_SIGN_ON_KEY_ENDPOINT": "http://keys.example.com"}
        )
    with pytest.raises(SettingsError, match="WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN is not"):
        Settings.from_env({"WEBSERVER_SIGN_ON_KEY_ENDPOINT": "https://keys.example.com"})
    with pytest.raises(SettingsError, match="WEBSERVER_SIGN_ON_CLIENT_ID is set but"):
        Settings.from_env({"WEBSERVER_SIGN_ON_CLIENT_ID": "operator-client"})
    assert (
        Settings.from_env(
            {"WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN": ARN, "WEBSERVER_SIGN_ON_CLIENT_ID": "op"}
        ).webserver_sign_on_client_id
        == "op"
    )
