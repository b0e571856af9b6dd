"""Who may open which UI: sign-on at the load balancer, one sign-in client per role.

Dagster OSS has no login and no roles. The load balancer signs people in (its `authenticate-cognito` or
`authenticate-oidc` action, before any request reaches a webserver) and gives each role its own host name, its own
webserver and its own sign-in client:

- **viewer** (`viewerHostName`): every person the identity provider signs in, on the read-only webserver;
- **operator** (`operatorHostName`): only members of the operators group, on the full webserver.

How the operators group is enforced, and why this way: the load balancer cannot test a group claim itself (its rules
match hosts, paths, headers, not the signed `x-amzn-oidc-data` claims), so the choice is between checking those
claims in a proxy in front of the operator webserver, or letting the identity provider refuse the operator client to
anyone outside the group. The claims route needs the group in the provider's user-info response, which Microsoft
Entra ID and Cognito do not put there, and code of ours in every request's path; the client route needs no code in
the request path and is the identity provider's own, audited access control. So:

- **OIDC** (`signOn=oidc`, any identity provider): two clients (apps) registered in the provider, the operator one
  assigned to the operators group only ("assignment required" in Entra ID, app assignments in Okta, a client policy
  in Keycloak). The load balancer reads both client secrets from one Secrets Manager secret at deploy time: the
  template holds only a `{{resolve:secretsmanager:...}}` reference, never a secret.
- **Cognito** (`signOn=cognito`, the default): a user pool made here (administrators create the users, TOTP MFA
  required, a strong password policy, Cognito's threat protection enforcing), an `operators` group and two app
  clients. Cognito would let any user of the pool use either client, so a pre-token-generation trigger
  (`functions/operators_only.py`) refuses the operator client to anyone outside the group at sign-in.

A sign-in lasts `signOnSessionHours` at the load balancer; removing someone from the operators group (or the pool, or
the provider) takes effect at their next sign-in, at most that long after.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.acknowledgments import acknowledge_wildcard, logical_id
from stacks.config import DeploymentConfig

VIEWER = "viewer"
OPERATOR = "operator"
OPERATORS_GROUP = "operators"
OIDC_SCOPE = "openid email"
TRIGGER_SOURCE = Path(__file__).resolve().parent.parent / "functions" / "operators_only.py"


class SignOn(Construct):
    """The load balancer's authenticate action for each role, from Cognito (made here) or an OIDC provider."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._hosts = {VIEWER: config.viewer_host_name, OPERATOR: config.operator_host_name}
        self.user_pool: cognito.UserPool | None = None
        if config.sign_on == "cognito":
            self._create_user_pool()

    def authenticate_then_forward(self, role: str, target_group: elbv2.IApplicationTargetGroup) -> elbv2.ListenerAction:
        """Sign `role`'s people in with its own client, then forward to its webserver; unauthenticated requests are
        sent to the sign-in page (never passed on)."""
        forward = elbv2.ListenerAction.forward([target_group])
        session_timeout = Duration.hours(self._config.sign_on_session_hours)
        if self.user_pool is not None:
            return elbv2_actions.AuthenticateCognitoAction(
                next=forward,
                user_pool=self.user_pool,
                user_pool_client=self._clients[role],
                user_pool_domain=self._domain,
                scope=OIDC_SCOPE,
                session_timeout=session_timeout,
                on_unauthenticated_request=elbv2.UnauthenticatedAction.AUTHENTICATE,
            )
        config = self._config
        return elbv2.ListenerAction.authenticate_oidc(
            next=forward,
            issuer=config.oidc_issuer,
            authorization_endpoint=config.oidc_authorization_endpoint,
            token_endpoint=config.oidc_token_endpoint,
            user_info_endpoint=config.oidc_user_info_endpoint,
            client_id=config.oidc_viewer_client_id if role == VIEWER else config.oidc_operator_client_id,
            # A dynamic reference, resolved by CloudFormation at deploy time: the template holds no secret.
            client_secret=SecretValue.secrets_manager(config.oidc_client_secret_name, json_field=role),
            scope=OIDC_SCOPE,
            session_timeout=session_timeout,
            on_unauthenticated_request=elbv2.UnauthenticatedAction.AUTHENTICATE,
        )

    @property
    def operator_client_id(self) -> str:
        """The operators' sign-in client: the `client` of every token the operators' webserver accepts."""
        if self.user_pool is not None:
            return self._clients[OPERATOR].user_pool_client_id
        return self._config.oidc_operator_client_id

    # --- Cognito ---------------------------------------------------------------------------------------------------

    def _create_user_pool(self) -> None:
        config = self._config
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{config.cluster_name}-ui",
            # Only administrators create users (README: adding a person); nobody signs themselves up.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True, username=False),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),  # an authenticator app, set up at first
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            # The Plus plan's threat protection blocks sign-ins from compromised credentials and risky attempts.
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="Your IntervalProcessing Dagster sign-in",
                email_body="Your user name is {username} and your temporary password is {####}. You will set a new "
                "password and an authenticator app at your first sign-in.",
            ),
            deletion_protection=True,
            # The people and their MFA enrolments outlive a stack replacement.
            removal_policy=RemovalPolicy.RETAIN,
        )
        cognito.UserPoolGroup(
            self,
            "OperatorsGroup",
            user_pool=self.user_pool,
            group_name=OPERATORS_GROUP,
            description="May open the operator UI (launch, re-execute, terminate, schedules); everyone else views.",
        )
        self._domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=config.cognito_domain_prefix or f"{config.cluster_name}-{Aws.ACCOUNT_ID}"
            ),
        )
        self._clients = {role: self._client(role) for role in (VIEWER, OPERATOR)}
        self._restrict_operator_client()

    def _client(self, role: str) -> cognito.UserPoolClient:
        """The load balancer's client for `role`: the authorization-code flow with a secret, its host's callback."""
        return self.user_pool.add_client(
            f"{role.capitalize()}Client",
            # The trigger tells the clients apart by this name.
            user_pool_client_name=role,
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"https://{self._hosts[role]}/oauth2/idpresponse"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(self._config.sign_on_session_hours),
        )

    def _restrict_operator_client(self) -> None:
        """The pre-token-generation trigger that refuses the operator client to non-members of the group."""
        config = self._config
        log_group = logs.LogGroup(self, "OperatorsOnlyLogGroup", retention=config.log_retention)
        role = iam.Role(
            self,
            "OperatorsOnlyRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Cognito trigger operators_only: write its log, read the pool's client names",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            "OperatorsOnly",
            description="Refuses the operator UI's sign-in client to users outside the operators group",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(TRIGGER_SOURCE.read_text()),
            environment={"OPERATOR_CLIENT_NAME": OPERATOR, "OPERATORS_GROUP": OPERATORS_GROUP},
            role=role,
            log_group=log_group,
            timeout=Duration.seconds(5),
            memory_size=128,
        )
        assert self.user_pool is not None
        self.user_pool.add_trigger(cognito.UserPoolOperation.PRE_TOKEN_GENERATION, function)
        # A policy of its own, not the role's default policy: the function depends on its role (and so on that
        # policy), the pool on the function (its trigger), and this grant on the pool.
        iam.Policy(
            self,
            "OperatorsOnlyReadsClientNames",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["cognito-idp:DescribeUserPoolClient"], resources=[self.user_pool.user_pool_arn]
                )
            ],
        )
        acknowledge_wildcard(
            role,
            f"<{logical_id(log_group)}.Arn>:*",
            "The function writes log streams that Lambda names per instance; the grant is limited to the streams "
            "of its own log group.",
        )
