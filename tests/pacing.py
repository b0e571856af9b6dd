"""A run worker that cannot get ahead of the test watching it: its calls to MongoDB and AWS wait for the test's look.

Tests kill a worker at a point in its run: k automations applied, a report or an upload being written. Most of a run
prints into its captured output, which reaches a test only through Dagster's ``tail -F`` mirror and so cannot hold
the run back, and a data-change step takes about 35 ms: a test process starved for a few hundred milliseconds would
let the run go past the point, or finish (reproduced by a 0.3 s sleep in the test's check). So the worker talks to
MongoDB and AWS through local TCP proxies and, while they hold, whatever it sends waits until the test has asked its
question after it arrived and heard no. Whatever the test sees, the worker is at most one call past it; what a
killed worker was sending is dropped, never delivered.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from pymongo.uri_parser import parse_uri

RECEIVE_BYTES = 1 << 20


class Pacing:
    """Proxies for a worker's MongoDB and AWS, passing calls straight through until :meth:`hold`."""

    def __init__(self) -> None:
        self._holding = False
        self._begun = 0  # questions asked
        self._answered = 0  # the last question answered no
        self._generation = 0  # connections older than the last release are ended
        self._ended = False
        self._changed = threading.Condition()
        self._listeners: list[socket.socket] = []
        self._connections: list[socket.socket] = []
        # A held call wakes a loop that selects on this object, so it asks now rather than at its next tick.
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_reader, False)
        os.set_blocking(self._wake_writer, False)

    def fileno(self) -> int:
        return self._wake_reader

    def woken(self) -> None:
        """Empty the wake-up pipe: the loop is about to ask."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_reader, RECEIVE_BYTES)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with its MongoDB URI (and AWS endpoint, if set) pointed at proxies to them."""
        uri = env["MONGODB_URI"]
        ((mongo_host, mongo_port),) = parse_uri(uri)["nodelist"]
        parts = urlsplit(uri)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = (f"{credentials}@" if credentials else "") + self._proxy((mongo_host, mongo_port))
        # Directly: SecantusDB names itself a replica set's member, and discovery would go around the proxy.
        query = "&".join(filter(None, [parts.query, "directConnection=true"]))
        proxied = {**env, "MONGODB_URI": parts._replace(netloc=netloc, path=parts.path or "/", query=query).geturl()}
        if "AWS_ENDPOINT_URL" in env:
            aws = urlsplit(env["AWS_ENDPOINT_URL"])
            proxied["AWS_ENDPOINT_URL"] = f"http://{self._proxy((aws.hostname or '127.0.0.1', aws.port or 80))}"
        return proxied

    def hold(self) -> None:
        """From now on, what the worker sends waits for a question asked after it arrived and answered no."""
        with self._changed:
            self._holding = True

    def ask(self, question: Callable[[str], bool], about: str = "") -> bool:
        """``question(about)``: on no, what arrived before it was asked goes on; on yes, nothing more does (kill the
        worker, then :meth:`release`)."""
        with self._changed:
            self._begun += 1
            asked = self._begun
        if question(about):
            return True
        with self._changed:
            self._answered = asked
            self._changed.notify_all()
        return False

    def release(self) -> None:
        """Stop holding: the connections open now end (what they held is never delivered); new ones go straight
        through."""
        with self._changed:
            self._holding = False
            self._generation += 1
            connections, self._connections = self._connections, []
            self._changed.notify_all()
        for sock in connections:
            _end(sock)

    def __enter__(self) -> Pacing:
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._changed:
            self._ended = True
            listeners, self._listeners = self._listeners, []
        self.release()
        for sock in listeners:
            _end(sock)
        os.close(self._wake_reader)
        os.close(self._wake_writer)

    def _proxy(self, target: tuple[str, int]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        with self._changed:
            self._listeners.append(listener)
        threading.Thread(target=self._accept, args=(listener, target), daemon=True).start()
        host, port = listener.getsockname()[:2]
        return f"{host}:{port}"

    def _accept(self, listener: socket.socket, target: tuple[str, int]) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # ended
            try:
                upstream = socket.create_connection(target)
            except OSError:
                _end(client)  # the worker sees the server unreachable, as it would without the proxy
                continue
            with self._changed:
                if self._ended:
                    _end(client)
                    _end(upstream)
                    return
                self._connections += [client, upstream]
                generation = self._generation
            threading.Thread(target=self._pump, args=(client, upstream, generation), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, held_in: int | None) -> None:
        """Copy ``source`` to ``sink``; with ``held_in`` (the worker's side, the generation it connected in), each
        piece waits while the proxies hold."""
        try:
            while data := source.recv(RECEIVE_BYTES):
                if held_in is not None and not self._wait_for_a_look(held_in):
                    return
                sink.sendall(data)
        except OSError:
            pass  # the other side ended the connection, or a release did
        finally:
            _end(source)
            _end(sink)

    def _wait_for_a_look(self, generation: int) -> bool:
        """Block while holding, until a question asked after now is answered no; False if the connection was ended
        by a release meanwhile."""
        with self._changed:
            arrived = self._begun
            if self._holding and generation == self._generation:
                with contextlib.suppress(BlockingIOError):  # full: the loop is already woken
                    os.write(self._wake_writer, b".")
                self._changed.wait_for(
                    lambda: generation != self._generation or not self._holding or self._answered > arrived
                )
            return generation == self._generation


def _end(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked on it (a plain close does not, on Linux)."""
    with contextlib.suppress(OSError):  # not connected, or already shut
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
