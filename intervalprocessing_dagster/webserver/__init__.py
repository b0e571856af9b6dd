"""The operators' webserver as production runs it: Dagster's own UI app, wrapped so that every request comes from
a verified, signed-in person and every change made through it leaves an audit line.

Dagster OSS has no login and stores no user on anything it does (its audit log is a Dagster+ feature). The load
balancer signs people in and passes who they are in a signed header; ``sign_on.py`` verifies that header,
``audit.py`` reads each GraphQL mutation and its outcome into one JSON line (and tags the runs a person launches),
``app.py`` is the ASGI wrapper around Dagster's app, and ``__main__.py`` the ``intervalprocessing-webserver`` command
(``dagster-webserver``'s options, the wrapped app). ``dev.py`` is ``intervalprocessing-dev``, the local UI: what
``dagster dev`` starts, with this webserver, so local changes are audited too (with the OS user).
"""
