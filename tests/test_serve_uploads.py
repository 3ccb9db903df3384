"""Upload size is refused before the body is held: on the Content-Length header at once, and while
streaming for a body without one (chunked) or with a lying one, after at most the limit plus what the
sockets buffer. Regression: a 200 MB upload was read whole into memory before the 20 MB check."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

from serve_utils import Recorder, fake_backbone, running_server

MB = 1024 * 1024
HEAD = (b"--B\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nWe call\r\n"
        b"--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"big.wav\"\r\nContent-Type: audio/wav\r\n\r\n")


def make_app():
    from lmm_apa.serve.app import create_app

    return create_app(backbone=fake_backbone(), batch_fn=Recorder())


def _request_head(base: str, extra: str) -> bytes:
    netloc = urlsplit(base).netloc
    return (f"POST /assess HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            f"{extra}\r\n").encode()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_content_length_over_the_limit_is_refused_before_the_body():
    with running_server(make_app()) as base:
        host, port = urlsplit(base).hostname, urlsplit(base).port
        with socket.create_connection((host, port)) as sock:
            sock.sendall(_request_head(base, f"Content-Length: {200 * MB}\r\n"))  # and no body at all
            response = _read_response(sock, timeout=10)
    assert _status(response) == 413, response[:300]
    assert b'"upload_too_large"' in response and b'"field":"audio"' in response


def test_streamed_body_is_cut_off_at_the_limit():
    """A chunked 200 MB body: the server answers 413 once past the limit; the client could push only
    about the limit plus socket buffers before that."""
    with running_server(make_app()) as base:
        host, port = urlsplit(base).hostname, urlsplit(base).port
        sent, response = 0, b""
        with socket.create_connection((host, port)) as sock:
            sock.sendall(_request_head(base, "Transfer-Encoding: chunked\r\n"))
            payload = b"\0" * MB
            chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
            sock.sendall(f"{len(HEAD):x}\r\n".encode() + HEAD + b"\r\n")
            deadline = time.monotonic() + 60
            reset = False  # the server may close the socket while the client is still pushing
            try:
                while sent < 200 * MB and time.monotonic() < deadline:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        break
                    sock.settimeout(5)
                    sock.sendall(chunk)
                    sent += len(payload)
            except (BrokenPipeError, ConnectionResetError):
                reset = True
            except socket.timeout:
                pass
            try:
                response = _read_response(sock, timeout=10)
            except ConnectionResetError:
                reset, response = True, b""
    limit = 20 * MB  # ServeOptions.max_upload_bytes: the server refuses only past it
    assert limit - MB <= sent < limit + 20 * MB, f"the server took {sent / MB:.0f} MB before refusing"
    if response.strip():
        assert _status(response) == 413 and b'"upload_too_large"' in response, response[:300]
    else:  # no answer is a pass only when the server cut the connection, not when it hung or crashed
        assert reset, "no 413 and no connection reset"
