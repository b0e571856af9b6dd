"""A task that cannot get ahead of the test watching it: its calls to MongoDB and AWS wait for the test's next look.

``FakeFargate.run(kill_when=...)`` kills a task at a point in its run: k automations applied, an upload in flight.
Most of a run prints into its captured output, which reaches the stand-in through Dagster's ``tail -F`` mirror and so
cannot hold it back, and a data-change step takes about 35 ms: a test process starved for a few hundred milliseconds
would let the run go past the point, or finish (reproduced by a 0.3 s sleep in ``kill_when``). So the task talks to
MongoDB and AWS through local TCP proxies, and whatever it sends waits until ``kill_when`` has been asked after it
arrived and said no. Whatever the test sees, the task is at most one call past it; what a killed task was sending is
dropped, never delivered.
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
    """One task's proxies, and the looks that let what they hold go on."""

    def __init__(self) -> None:
        self._begun = 0  # looks begun
        self._answered = 0  # the last look that said no
        self._dropped = False
        self._changed = threading.Condition()
        self._sockets: list[socket.socket] = []
        # A held call wakes the stand-in's loop (select on this object) so it looks now rather than at its next tick.
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_reader, False)
        os.set_blocking(self._wake_writer, False)

    def fileno(self) -> int:
        return self._wake_reader

    def woken(self) -> None:
        """Empty the wake-up pipe: the loop is about to look."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_reader, RECEIVE_BYTES)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with its MongoDB URI and AWS endpoint pointed at proxies to them."""
        ((mongo_host, mongo_port),) = parse_uri(env["MONGODB_URI"])["nodelist"]
        aws = urlsplit(env["AWS_ENDPOINT_URL"])
        mongo = self._proxy((mongo_host, mongo_port))
        endpoint = self._proxy((aws.hostname or "127.0.0.1", aws.port or 80))
        # Directly: SecantusDB names itself a replica set's member, and discovery would go around the proxy.
        return {
            **env,
            "MONGODB_URI": f"mongodb://{mongo}/?directConnection=true",
            "AWS_ENDPOINT_URL": f"http://{endpoint}",
        }

    def ask(self, kill_when: Callable[[str], bool], output: str) -> bool:
        """Ask ``kill_when`` about ``output``; on no, what arrived before it was asked goes on; on yes, nothing more
        does (kill the task, then :meth:`drop`)."""
        with self._changed:
            self._begun += 1
            look = self._begun
        if kill_when(output):
            return True
        with self._changed:
            self._answered = look
            self._changed.notify_all()
        return False

    def drop(self) -> None:
        """Drop what is held and every connection (the task has been killed, or has ended)."""
        with self._changed:
            self._dropped = True
            self._changed.notify_all()
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _end(sock)

    def __enter__(self) -> Pacing:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()
        os.close(self._wake_reader)
        os.close(self._wake_writer)

    def _proxy(self, target: tuple[str, int]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        self._keep(listener)
        threading.Thread(target=self._accept, args=(listener, target), daemon=True).start()
        host, port = listener.getsockname()[:2]
        return f"{host}:{port}"

    def _keep(self, sock: socket.socket) -> bool:
        with self._changed:
            if self._dropped:
                _end(sock)
                return False
            self._sockets.append(sock)
            return True

    def _accept(self, listener: socket.socket, target: tuple[str, int]) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # dropped
            if not self._keep(client):
                return
            try:
                upstream = socket.create_connection(target)
            except OSError:
                _end(client)
                continue
            if not self._keep(upstream):
                return
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, paced: bool) -> None:
        try:
            while data := source.recv(RECEIVE_BYTES):
                if paced and not self._wait_for_a_look():
                    return
                sink.sendall(data)
        except OSError:
            pass  # the other side, or drop(), ended the connection
        finally:
            _end(source)
            _end(sink)

    def _wait_for_a_look(self) -> bool:
        """Block until a look begun after now has said no; False once dropped."""
        with self._changed:
            arrived = self._begun
            if self._dropped:
                return False
            with contextlib.suppress(BlockingIOError):  # full: the loop is already woken
                os.write(self._wake_writer, b".")
            self._changed.wait_for(lambda: self._dropped or self._answered > arrived)
            return not self._dropped


def _end(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked on it (a plain close does not, on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or already shut
    sock.close()
