"""``intervalprocessing-webserver`` (also ``python -m intervalprocessing_dagster.webserver``): ``dagster-webserver``
with the operators' wrapper (``app.py``), for the operators' full UI.

It takes exactly ``dagster-webserver``'s options (the same click parameters) and does what that command does (the
instance from ``DAGSTER_HOME`` or the current folder's ``dagster.yaml``, the workspace, uvicorn), except that the app
Dagster builds with its public ``create_app_from_workspace_process_context`` is served inside
:class:`~intervalprocessing_dagster.webserver.app.AuditedWebserver`. Sign-on and the audit log's place come from
``settings.py`` (``WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN``, ``WEBSERVER_SIGN_ON_KEY_ENDPOINT``,
``WEBSERVER_SIGN_ON_CLIENT_ID``, ``WEBSERVER_AUDIT_LOG``).
A bad setting stops it before it serves anything, with the variable named.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import sys
from typing import Any

import click
import uvicorn
from dagster import deserialize_value
from dagster._cli.utils import assert_no_remaining_opts, get_possibly_temporary_instance_for_cli
from dagster._cli.workspace.cli_target import WorkspaceOpts, workspace_opts_to_load_target
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._utils.log import configure_loggers
from dagster_shared.ipc import interrupt_on_ipc_shutdown_message
from dagster_webserver.app import create_app_from_workspace_process_context
from dagster_webserver.cli import dagster_webserver
from dagster_webserver.version import __version__

from intervalprocessing_dagster.settings import Settings, SettingsError
from intervalprocessing_dagster.webserver.app import AuditedWebserver
from intervalprocessing_dagster.webserver.audit import AuditLog, mutation_schema
from intervalprocessing_dagster.webserver.sign_on import AlbTokenVerifier

log = logging.getLogger("intervalprocessing.webserver")


def serve(
    host: str,
    port: int | None,
    path_prefix: str,
    db_statement_timeout: int,
    db_pool_recycle: int,
    db_pool_max_overflow: int,
    read_only: bool,
    suppress_warnings: bool,
    uvicorn_log_level: str,
    dagster_log_level: str,
    log_format: str,
    code_server_log_level: str,
    instance_ref: str | None,
    live_data_poll_rate: int,
    shutdown_pipe: int | None,
    **other_opts: Any,
) -> None:
    """``dagster-webserver``'s start-up, serving the wrapped app."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    workspace_opts = WorkspaceOpts.extract_from_cli_options(other_opts)
    assert_no_remaining_opts(other_opts)
    if suppress_warnings:
        os.environ["PYTHONWARNINGS"] = "ignore"
    configure_loggers(formatter=log_format, log_level=dagster_log_level.upper())
    if not log.handlers:  # refusals and start-up, on stderr beside Dagster's own lines
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
    audit_log = AuditLog(settings.webserver_audit_log or sys.stdout)
    verifier = (
        AlbTokenVerifier(
            settings.webserver_sign_on_load_balancer_arn,
            settings.webserver_sign_on_key_endpoint or "",
            client_id=settings.webserver_sign_on_client_id,
        )
        if settings.webserver_sign_on_load_balancer_arn
        else None
    )
    mutation_schema()  # read the schema's mutations now, not on the first change
    with contextlib.ExitStack() as stack:
        if shutdown_pipe:
            stack.enter_context(interrupt_on_ipc_shutdown_message(shutdown_pipe))
        instance = stack.enter_context(
            get_possibly_temporary_instance_for_cli(
                cli_command="intervalprocessing-webserver",
                instance_ref=deserialize_value(instance_ref) if instance_ref else None,  # dagster dev's --instance-ref
                logger=log,
            )
        )
        instance.optimize_for_webserver(db_statement_timeout, db_pool_recycle, db_pool_max_overflow)
        context = stack.enter_context(
            WorkspaceProcessContext(
                instance,
                version=__version__,
                read_only=read_only,
                workspace_load_target=workspace_opts_to_load_target(workspace_opts),
                code_server_log_level=code_server_log_level,
            )
        )
        app = AuditedWebserver(
            create_app_from_workspace_process_context(context, path_prefix, live_data_poll_rate),
            audit_log=audit_log,
            verifier=verifier,
            os_user=getpass.getuser(),
            path_prefix=path_prefix,
        )
        log.info(
            "Serving the operators' webserver on http://%s:%s%s; sign-on %s; audit lines to %s",
            host,
            port or 3000,
            path_prefix,
            f"required (load balancer {settings.webserver_sign_on_load_balancer_arn})" if verifier else "off (OS user)",
            audit_log.destination,
        )
        uvicorn.run(app, host=host, port=port or 3000, log_level=uvicorn_log_level)


command = click.Command(
    name="intervalprocessing-webserver",
    params=list(dagster_webserver.params),
    callback=serve,
    help="dagster-webserver with sign-on verification and the audit log (intervalprocessing_dagster/webserver).",
)


def main() -> None:
    command(auto_envvar_prefix="DAGSTER_WEBSERVER")


if __name__ == "__main__":
    main()
