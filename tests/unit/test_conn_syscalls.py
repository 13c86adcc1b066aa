"""Which system call carries a ``wsgi.file_wrapper`` body: sendfile(2) when
the setting is on, never when it is off. The bytes alone cannot tell, so a
child process serves the file under strace (``tests/straced.py``).

Kept apart from test_conn.py, which is in the wheels' smoke subset: the
build containers have no strace, and CI (``.ci/run``) installs it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from straced import calls, strace_prefix

# One file_wrapper response served by a Connection in a child process that
# strace started: the bytes the client got, and the system calls made.
_SERVE_FILE = """
import hashlib, logging, socket, sys, threading
from fastwsgi._conn import Connection, WorkerContext
from fastwsgi.config import WorkerSettings
path, use_sendfile = sys.argv[1], sys.argv[2] == "1"
ws = WorkerSettings(header_timeout=5.0, body_timeout=5.0, timeout=5.0, sendfile=use_sendfile)
ctx = WorkerContext(ws, logging.getLogger("child"), None, None, keepalive=False)
a, b = socket.socketpair()
conn = Connection(ctx, a, ("127.0.0.1", 1), ("127.0.0.1", 8000))
def app(environ, start_response):
    start_response("200 OK", [])
    return environ["wsgi.file_wrapper"](open(path, "rb"))
got = []
def reader():
    while d := b.recv(1 << 20):
        got.append(d)
t = threading.Thread(target=reader)
t.start()
b.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
conn.handle_request(app)
conn.close()
t.join(30)
print(hashlib.sha256(b"".join(got).partition(b"\\r\\n\\r\\n")[2]).hexdigest())
"""


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_sendfile_setting_decides_the_system_call(tmp_path: Path, use_sendfile: bool) -> None:
    # The bytes alone cannot tell the two paths apart: strace shows which ran.
    data = os.urandom(1 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    out = tmp_path / "strace.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [*strace_prefix(out, "sendfile"), sys.executable, "-c", _SERVE_FILE, str(path),
         "1" if use_sendfile else "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == hashlib.sha256(data).hexdigest()
    if use_sendfile:
        assert calls(out, "sendfile") >= 1, out.read_text()[-2000:]
    else:
        assert calls(out, "sendfile") == 0, out.read_text()[-2000:]
