"""A byte-exact SMTP client on a plain socket, for input smtplib and aiosmtplib would never send."""
import socket
import time

LOCAL = "127.0.0.1"
CLIENT_NAME = "client.example.org"


class RawClient:
    """One connection from ``source`` (any 127.0.0.0/8 address: Linux routes them all to loopback).

    Replies are read with bounded waits; ``silent_for`` and ``closed_within`` prove what did *not* happen.
    """

    def __init__(self, port, source=LOCAL, server=LOCAL, timeout=5.0):
        self.sock = socket.create_connection((server, port), timeout=timeout, source_address=(source, 0))
        self.timeout = timeout
        self.pending = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply line within {timeout} s; got {self.pending!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"the server closed the connection; pending {self.pending!r}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self, timeout=None):
        """(code, text) of the next reply; the lines of a multi-line reply are joined with newlines."""
        lines = []
        while True:
            line = self._line(timeout or self.timeout)
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    def command(self, line):
        self.send(line.encode("latin-1") + b"\r\n")
        return self.reply()

    def ehlo(self):
        code, text = self.command(f"EHLO {CLIENT_NAME}")
        assert code == 250, text
        return text.splitlines()

    def silent_for(self, seconds):
        """True when the server sends nothing for ``seconds`` and keeps the connection open."""
        if self.pending:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.pending += chunk
        return False

    def closed_within(self, seconds):
        """True when the server closes the connection within ``seconds`` (whatever it sent before)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.pending += chunk
        return False


def greeted(port, source=LOCAL, server=LOCAL, timeout=5.0):
    """A RawClient that has read a 220 greeting."""
    client = RawClient(port, source, server, timeout)
    code, text = client.reply()
    assert code == 220, (code, text)
    return client
