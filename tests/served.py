"""A server started as its users start it, for the tests that talk to it over loopback HTTP: a subprocess on a free
port (tried again when another process takes the port first), its output in a log file, stopped with terminate,
then kill. Subclasses give the command, the environment and what "ready" means (``tests/demo/browser.py``'s
``DemoServer``, ``tests/mcp/test_conformance.py``'s ``Server``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedProcess(ABC):
    """``command(port)`` run in ``folder``, its output in ``folder/<log_name>``."""

    #: Seconds for the process to become ready.
    ready_timeout = 60.0
    #: The log's file name, and what the errors call the process.
    log_name = "server.log"
    what = "the server"

    def __init__(self, folder: Path, args: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.args = [str(a) for a in args]
        self.log = self.folder / self.log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @abstractmethod
    def command(self, port: int) -> list[str]:
        """The command line, listening on ``port``."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @abstractmethod
    def ready(self) -> bool:
        """Whether it serves (called every 0.25 s until ``ready_timeout``)."""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def start(self) -> ServedProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for _attempt in range(3):  # another process may take the free port before this one binds it
            self.port = free_port()
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(self.command(self.port), env=env, cwd=str(self.folder),
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + self.ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.ready():
                    return self
                time.sleep(0.25)
            else:
                self.stop()
                raise RuntimeError(f"{self.what} was not ready within {self.ready_timeout:.0f} s:\n{self.log_tail()}")
            if "address already in use" not in self.log_tail().lower():
                break
        raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def __enter__(self) -> ServedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServedProcess", "free_port"]
