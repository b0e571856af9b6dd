"""The Postgres role of the viewers' webserver: it can read Dagster's tables and write none of them.

``dagster-webserver --read-only`` refuses every change in its GraphQL API, but that is the webserver's promise; with
the instance's own credentials a bug or a compromised viewer task could still write. So the viewers' webserver
connects as its own role (``DAGSTER_VIEWER_PG_USERNAME``, default ``dagster_viewer``) that the database itself
keeps read-only:

- ``LOGIN`` with the password from ``DAGSTER_VIEWER_PG_PASSWORD`` (its own generated secret in production), no
  superuser, database or role creation, and ``default_transaction_read_only`` on;
- ``CONNECT`` on the database, ``USAGE`` on the ``public`` schema (Postgres 15 and later give ``PUBLIC`` no
  ``CREATE`` there), ``SELECT`` on every table and sequence, and every other table privilege revoked;
- ``SELECT`` by default on the tables the instance's own role creates later (a Dagster upgrade's migrations).

:func:`ensure_viewer_role` is idempotent and puts everything back as listed (a password changed in the secret, a
privilege granted by hand) each time it runs: ``intervalprocessing-viewer-role`` runs it with the instance's
``dagster.yaml`` credentials, in production as the daemon task's first container at every deployment
(``infra_cdk/stacks/dagster_services.py``).
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg2
from dagster import DagsterInstance, EnvVar
from psycopg2 import sql
from sqlalchemy.engine import make_url

from intervalprocessing_dagster.settings import VIEWER_PG_PASSWORD_VARIABLE, Settings, SettingsError

#: Privileges taken back on every table, whoever granted them.
WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"


def ensure_viewer_role(connection: Any, *, role: str, password: str) -> None:
    """Create or correct ``role`` as the read-only role described above, in ``connection``'s database (committed).
    ``connection`` is the instance's own role, which owns Dagster's tables."""
    name = sql.Identifier(role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_user")
        database, owner = cursor.fetchone()
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
        cursor.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %s").format(
                name
            ),
            (password,),
        )
        cursor.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(name))
        cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name))
        cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(name))
        cursor.execute(sql.SQL(f"REVOKE {WRITE_PRIVILEGES} ON ALL TABLES IN SCHEMA public FROM {{}}").format(name))
        cursor.execute(sql.SQL("REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA public FROM {}").format(name))
        cursor.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(name))
        cursor.execute(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(name))
        cursor.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(
                sql.Identifier(owner), name
            )
        )
    connection.commit()


def main() -> int:
    """``intervalprocessing-viewer-role``: the viewer role on the instance's Postgres (``DAGSTER_HOME``'s
    ``dagster.yaml``); exit 2 with one line when something is missing."""
    try:
        settings = Settings.from_env()
        password = EnvVar(VIEWER_PG_PASSWORD_VARIABLE).get_value()
        if not password:
            raise SettingsError(f"{VIEWER_PG_PASSWORD_VARIABLE} is not set: the viewer role's password")
        with DagsterInstance.get() as instance:
            storage_data = instance.get_ref().storage_data
        # The storage as dagster.yaml configures it (its {env: ...} values resolved), for its connection URL.
        storage = storage_data.rehydrate() if storage_data else None
        postgres_url = getattr(storage, "postgres_url", None)  # its pools close with this short-lived process
        if not postgres_url:
            raise SettingsError("the instance's dagster.yaml has no Postgres storage: there is no role to make")
    except Exception as exc:  # a configuration problem, said in one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = make_url(postgres_url)
    connection = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database, **url.query
    )
    try:
        ensure_viewer_role(connection, role=settings.viewer_pg_username, password=password)
    finally:
        connection.close()
    print(f"viewer role {settings.viewer_pg_username} on {url.host}/{url.database}: read-only, current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
