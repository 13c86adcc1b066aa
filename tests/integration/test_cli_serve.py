"""The real command serving requests: every server hook with its arguments,
access-log lines in the configured format (default, custom, JSON), and a
Gunicorn-style config file running unchanged."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import server as procserver
from server import children, wait_until

import fastwsgi

SRC = str(Path(fastwsgi.__file__).parent.parent)
READY_TIMEOUT = 60.0
WAIT_TIMEOUT = 30.0
CLF_TIME = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"

APP = '''
import os

def application(environ, start_response):
    body = ("%s %s" % (environ["PATH_INFO"], os.environ.get("SPAM", "-"))).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("X-Served-By", "fastwsgi-test")])
    return [body]
'''

HOOKS_CONF = '''
import json
import os

_LOG = os.environ["HOOK_LOG"]


def _record(name, *args, **extra):
    rec = {"hook": name, "pid": os.getpid(), "args": [type(a).__name__ for a in args]}
    rec.update(extra)
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\\n").encode())
    finally:
        os.close(fd)


def on_starting(server):
    _record("on_starting", server)


def on_reload(server):
    _record("on_reload", server)


def when_ready(server):
    _record("when_ready", server)


def pre_fork(server, worker):
    _record("pre_fork", server, worker)


def post_fork(server, worker):
    _record("post_fork", server, worker, worker_pid=worker.pid)


def post_worker_init(worker):
    _record("post_worker_init", worker)


def worker_int(worker):
    _record("worker_int", worker)


def worker_abort(worker):
    _record("worker_abort", worker)


def pre_exec(server):
    _record("pre_exec", server)


def pre_request(worker, req):
    _record("pre_request", worker, req)


def post_request(worker, req, environ, resp):
    _record("post_request", worker, req, environ, resp, path=environ["PATH_INFO"])


def child_exit(server, worker):
    _record("child_exit", server, worker, worker_pid=worker.pid)


def worker_exit(server, worker):
    _record("worker_exit", server, worker)


def nworkers_changed(server, new_value, old_value):
    _record("nworkers_changed", server, new_value, old_value, new=new_value, old=old_value)


def on_exit(server):
    _record("on_exit", server)
'''

# An equivalent of Gunicorn's examples/example_config.py (same settings and
# hooks, written for this test): it must run unchanged.
GUNICORN_STYLE_CONF = '''
# Server socket
bind = "127.0.0.1:8000"
backlog = 2048

# Worker processes
workers = 1
worker_class = "sync"
worker_connections = 1000
timeout = 30
keepalive = 2

spew = False

# Server mechanics
daemon = False
raw_env = [
    "DJANGO_SECRET_KEY=not-a-secret",
    "SPAM=eggs",
]
pidfile = None
umask = 0
user = None
group = None
tmp_upload_dir = None

# Logging
errorlog = "-"
loglevel = "info"
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# Process naming
proc_name = None


# Server hooks
def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %s)", worker.pid)


def pre_fork(server, worker):
    pass


def pre_exec(server):
    server.log.info("Forked child, re-executing.")


def when_ready(server):
    server.log.info("Server is ready. Spawning workers")


def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")

    # dump every thread's stack, as the Gunicorn example does
    import sys
    import threading
    import traceback

    id2name = {th.ident: th.name for th in threading.enumerate()}
    code = []
    for thread_id, stack in sys._current_frames().items():
        code.append("\\n# Thread: %s(%d)" % (id2name.get(thread_id, ""), thread_id))
        for filename, lineno, name, line in traceback.extract_stack(stack):
            code.append('File: "%s", line %d, in %s' % (filename, lineno, name))
            if line:
                code.append("  %s" % (line.strip()))
    worker.log.debug("\\n".join(code))


def worker_abort(worker):
    worker.log.info("worker received SIGABRT signal")
'''


class Server(procserver.Server):
    """``server.Server`` with stdout apart (accesslog "-" goes there), started
    at once, a ``get`` with headers that says None for no answer, and
    ``extra_pids`` (a USR2 child) stopped with it."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None, bind: bool = True) -> None:
        super().__init__(args, cwd, bind=bind, env=env, split_output=True)
        self.extra_pids: list[int] = []
        self.start()

    @property
    def stderr(self) -> str:
        return self.log()

    @property
    def stdout(self) -> str:
        assert self.out_path is not None
        return procserver.read_text(self.out_path)

    def get(self, path: str = "/", headers: dict[str, str] | None = None,  # type: ignore[override]
            timeout: float = 10.0) -> tuple[int, bytes] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError:
            return None
        finally:
            conn.close()

    def wait_ready(self, path: str = "/ready") -> tuple[int, bytes]:  # type: ignore[override]
        def probe() -> tuple[int, bytes] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr}")
            return self.get(path)

        return wait_until("the server to answer", probe, READY_TIMEOUT)

    def stop(self) -> None:
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.close(grace=30)
        for pid in self.extra_pids:
            try:
                procserver.wait_until_gone(pid, 30)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    (tmp_path / "serveapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def start(appdir: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def _start(*args: str, **kw: Any) -> Server:
        server = Server(appdir, *args, **kw)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


# --- hooks ---------------------------------------------------------------------------


class HookLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def find(self, hook: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["hook"] == hook and all(r.get(k) == v for k, v in match.items())]

    def wait(self, hook: str, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        return wait_until(f"{count} x {hook} {match or ''}",
                        lambda: (found := self.find(hook, **match)) and len(found) >= count and found)


def booted_workers(hooks: HookLog, count: int) -> list[int]:
    """Until exactly ``count`` workers are live (forked, not yet reaped) and
    have all run post_worker_init; their pids in fork-record order."""

    def live_and_booted() -> list[int] | None:
        live = [r["worker_pid"] for r in hooks.find("post_fork")
                if not hooks.find("child_exit", worker_pid=r["worker_pid"])]
        booted = {r["pid"] for r in hooks.find("post_worker_init")}
        return live if len(live) == count and booted.issuperset(live) else None

    return wait_until(f"{count} live workers that have booted", live_and_booted)


def test_every_hook_is_called_with_its_arguments(appdir: Path, start: Callable[..., Server]) -> None:
    (appdir / "hooks.conf.py").write_text(HOOKS_CONF)
    hooks = HookLog(appdir / "hooks.jsonl")
    server = start("-c", "hooks.conf.py", "-w", "1", "serveapp", env={"HOOK_LOG": str(hooks.path)})
    assert server.wait_ready("/first") == (200, b"/first -")
    master = server.proc.pid

    (starting,) = hooks.wait("on_starting")
    assert starting["args"] == ["Arbiter"] and starting["pid"] == master
    assert hooks.wait("when_ready")[0]["args"] == ["Arbiter"]
    pre_fork = hooks.wait("pre_fork")[0]
    assert pre_fork["pid"] == master and pre_fork["args"][0] == "Arbiter" and pre_fork["args"][1].endswith("Worker")
    post_fork = hooks.wait("post_fork")[0]
    worker1 = post_fork["worker_pid"]
    assert post_fork["pid"] == worker1 != master
    assert hooks.wait("post_worker_init", pid=worker1)[0]["args"][0].endswith("Worker")
    pre_request = hooks.wait("pre_request")[0]
    assert pre_request["pid"] == worker1 and len(pre_request["args"]) == 2
    post_request = hooks.wait("post_request", path="/first")[0]
    assert post_request["pid"] == worker1 and post_request["args"][2] == "dict" and len(post_request["args"]) == 4

    # TTIN: one more worker.
    os.kill(master, signal.SIGTTIN)
    changed = hooks.wait("nworkers_changed")[0]
    assert (changed["new"], changed["old"], changed["pid"]) == (2, 1, master)
    hooks.wait("post_worker_init", count=2)
    old_generation = booted_workers(hooks, 2)

    # HUP: reload, workers replaced; the configuration says -w 1 again (the
    # TTIN is forgotten, as in Gunicorn). Wait until every old worker has gone
    # and the new one booted, so the workers picked below are the live ones.
    os.kill(master, signal.SIGHUP)
    reload_rec = hooks.wait("on_reload")[0]
    assert reload_rec["args"] == ["Arbiter"] and reload_rec["pid"] == master
    for pid in old_generation:
        hooks.wait("child_exit", worker_pid=pid)
        hooks.wait("worker_exit", pid=pid)
    new_generation = booted_workers(hooks, 1)
    assert not set(new_generation) & set(old_generation)

    # SIGABRT (what the master sends a worker that timed out): worker_abort in the worker.
    victim = new_generation[-1]
    os.kill(victim, signal.SIGABRT)
    abort = hooks.wait("worker_abort", pid=victim)[0]
    assert abort["args"][0].endswith("Worker")
    exited = hooks.wait("child_exit", worker_pid=victim)[0]
    assert exited["pid"] == master and exited["args"][0] == "Arbiter"

    # INT: quick shutdown; workers get QUIT, so worker_int runs in each. The
    # victim's replacement is waited for too: it must have booted to run the hook.
    survivors = booted_workers(hooks, 1)
    assert victim not in survivors
    os.kill(master, signal.SIGINT)
    assert server.proc.wait(WAIT_TIMEOUT) == 0
    for pid in survivors:
        assert hooks.find("worker_int", pid=pid), pid
    final = hooks.records()[-1]
    assert final["hook"] == "on_exit" and final["pid"] == master and final["args"] == ["Arbiter"]
    assert "Exception in" not in server.stderr


def test_pre_exec_on_usr2(appdir: Path, start: Callable[..., Server]) -> None:
    (appdir / "hooks.conf.py").write_text(HOOKS_CONF)
    hooks = HookLog(appdir / "hooks.jsonl")
    pidfile = appdir / "master.pid"
    server = start("-c", "hooks.conf.py", "-p", str(pidfile), "serveapp", env={"HOOK_LOG": str(hooks.path)})
    server.wait_ready()
    master = server.proc.pid
    os.kill(master, signal.SIGUSR2)
    pre_exec = hooks.wait("pre_exec")[0]
    assert pre_exec["args"] == ["Arbiter"]
    new_master = wait_until("the new master", lambda: [r["pid"] for r in hooks.find("on_starting") if r["pid"] != master])
    server.extra_pids.append(new_master[0])
    hooks.wait("when_ready", pid=new_master[0])


# --- access log --------------------------------------------------------------------


def access_lines(path: Path, count: int) -> list[str]:
    return wait_until(f"{count} access log lines in {path.name}",
                    lambda: path.exists() and len(lines := path.read_text().splitlines()) >= count and lines)


def test_default_access_log_line(appdir: Path, start: Callable[..., Server]) -> None:
    log = appdir / "access.log"
    server = start("--access-logfile", str(log), "serveapp")
    server.wait_ready("/ready")
    body = "/hello/w\xc3\xb6rld -".encode("latin-1")  # PATH_INFO is latin-1-decoded bytes
    assert server.get("/hello/w%C3%B6rld?x=1&y=%22", {"User-Agent": "test-agent/1.0", "Referer": "http://r/"}) == (
        200, body)
    lines = access_lines(log, 2)
    assert re.fullmatch(
        r'127\.0\.0\.1 - - ' + CLF_TIME
        + rf' "GET /hello/w%C3%B6rld\?x=1&y=%22 HTTP/1\.1" 200 {len(body)} "http://r/" "test-agent/1\.0"',
        lines[1],
    ), lines[1]


def test_custom_access_log_format(appdir: Path, start: Callable[..., Server]) -> None:
    log = appdir / "access.log"
    fmt = "%(m)s|%(U)s|%(q)s|%(s)s|%(B)s|%({x-request-id}i)s|%({x-served-by}o)s|%(D)s|%(p)s"
    server = start("--access-logfile", str(log), "--access-logformat", fmt, "serveapp")
    server.wait_ready("/ready")
    server.get("/p?q=1", {"X-Request-Id": "rid-42"})
    line = access_lines(log, 2)[1]
    method, path, query, status, length, rid, served, micros, pid = line.split("|")
    assert (method, path, query, status, length, rid, served) == ("GET", "/p", "q=1", "200", "4", "rid-42",
                                                                  "fastwsgi-test")
    assert int(micros) >= 0 and re.fullmatch(r"<\d+>", pid)


def test_json_access_log(appdir: Path, start: Callable[..., Server]) -> None:
    log = appdir / "access.log"
    server = start("--access-logfile", str(log), "--access-log-json", "serveapp")
    server.wait_ready("/ready")
    server.get("/j?k=v", {"User-Agent": 'quote" and \\ backslash', "Referer": "http://r/"})
    record = json.loads(access_lines(log, 2)[1])
    assert record["method"] == "GET" and record["path"] == "/j" and record["query"] == "k=v"
    assert record["uri"] == "/j?k=v" and record["protocol"] == "HTTP/1.1" and record["status"] == 200
    assert record["user_agent"] == 'quote" and \\ backslash' and record["referer"] == "http://r/"
    assert record["bytes"] == len(b"/j -") and record["remote_addr"] == "127.0.0.1"
    assert isinstance(record["duration_s"], float) and 0 <= record["duration_s"] < 60


def test_access_log_reopened_on_usr1(appdir: Path, start: Callable[..., Server]) -> None:
    log = appdir / "access.log"
    server = start("--access-logfile", str(log), "serveapp")
    server.wait_ready("/ready")
    access_lines(log, 1)
    os.rename(log, appdir / "access.log.1")
    os.kill(server.proc.pid, signal.SIGUSR1)

    def reopened() -> bool:
        server.get("/probe")  # lands in the old file until the worker reopens
        return log.exists() and "/probe" in log.read_text()

    wait_until("the worker to reopen the access log", reopened)
    server.get("/after")
    wait_until("/after in the new access log", lambda: "/after" in log.read_text())
    assert "/after" not in (appdir / "access.log.1").read_text()


# --- a Gunicorn config file, unchanged --------------------------------------------------


def test_gunicorn_example_config_runs_unchanged(appdir: Path, start: Callable[..., Server]) -> None:
    (appdir / "gunicorn_example.py").write_text(GUNICORN_STYLE_CONF)
    # The file binds 127.0.0.1:8000; the command line wins (Gunicorn's order),
    # so the test does not depend on that port being free.
    server = start("-c", "gunicorn_example.py", "serveapp")
    assert server.wait_ready("/x") == (200, b"/x eggs")  # raw_env reached the app
    access_lines(server.out_path, 1)  # accesslog = "-" is stdout
    assert re.fullmatch(r'127\.0\.0\.1 - - ' + CLF_TIME + rf' "GET /x HTTP/1\.1" 200 {len(b"/x eggs")} "-" "-"',
                        server.stdout.splitlines()[0])
    wait_until("the when_ready hook", lambda: "Server is ready. Spawning workers" in server.stderr)
    wait_until("the post_fork hook", lambda: re.search(r"\[INFO\] Worker spawned \(pid: \d+\)", server.stderr))
    assert "not supported" not in server.stderr  # spew = False etc. are off values
    os.kill(server.proc.pid, signal.SIGQUIT)
    assert server.proc.wait(WAIT_TIMEOUT) == 0
    assert "worker received INT or QUIT signal" in server.stderr
    assert "Traceback" not in server.stderr


# --- SIGHUP re-reads the config file ----------------------------------------------------


def test_hup_rereads_the_config_file(appdir: Path, start: Callable[..., Server]) -> None:
    conf = appdir / "reload.conf.py"
    hooks = HookLog(appdir / "hooks.jsonl")
    conf.write_text(HOOKS_CONF + "\nworkers = 1\n")
    server = start("-c", str(conf), "serveapp", env={"HOOK_LOG": str(hooks.path)})
    server.wait_ready()
    master = server.proc.pid
    hooks.wait("post_worker_init")

    conf.write_text(HOOKS_CONF + "\nworkers = 2\nraw_env = ['SPAM=reloaded']\n")
    os.kill(master, signal.SIGHUP)
    hooks.wait("on_reload")

    def two_new_workers() -> bool:
        reload_at = [i for i, r in enumerate(hooks.records()) if r["hook"] == "on_reload"][0]
        later = [r for r in hooks.records()[reload_at:] if r["hook"] == "post_worker_init"]
        return len(later) >= 2

    wait_until("two workers from the new configuration", two_new_workers)
    wait_until("the new environment in the app", lambda: server.get("/r") == (200, b"/r reloaded"))

    # A broken config on HUP: logged, the old configuration keeps serving.
    conf.write_text("workers = 'two'\n")
    os.kill(master, signal.SIGHUP)
    wait_until("the reload failure in the log", lambda: "invalid value for --workers" in server.stderr)
    assert server.get("/still") == (200, b"/still reloaded")
    assert server.proc.poll() is None


def test_hup_after_a_broken_deploy_keeps_the_old_workers(
    appdir: Path, start: Callable[..., Server]
) -> None:
    """New code that does not import, then HUP: Gunicorn's master halts and
    takes the working workers with it. Here the reload fails, the previous
    workers keep answering, and HUP after the fix is taken."""
    mod = appdir / "deployapp.py"
    loaded = appdir / "loaded"
    loaded.mkdir()
    # Each worker leaves a file once it has imported the app: the broken code
    # must land only after both have, or a worker still booting imports it
    # too (and the message rightly counts one previous worker, not two).
    version = (
        "import os\n"
        f"open(os.path.join({str(loaded)!r}, str(os.getpid())), 'w').close()\n"
        "def application(e, s):\n    s('200 OK', [])\n    return [b'%s']\n"
    )
    mod.write_text(version % "v1")
    server = start("-w", "2", "deployapp")
    assert server.wait_ready("/") == (200, b"v1")
    # Counted by the pids of booted workers: the start-up probe child imports
    # the app too, and its file alone must not let the broken code in early.
    wait_until("both workers to load v1", lambda: len(
        set(re.findall(r"Booting worker with pid: (\d+)", server.stderr))
        & {p.name for p in loaded.iterdir()}) >= 2)
    master = server.proc.pid
    save(mod, "import no_such_module_anywhere\n" + version % "v2", 2)
    os.kill(master, signal.SIGHUP)
    wait_until("the failed reload", lambda: "Reload failed: Failed to load application 'deployapp'"
             in server.stderr)
    assert "the 2 previous worker(s) keep serving" in server.stderr
    for _ in range(4):
        assert server.get("/") == (200, b"v1")
    assert server.proc.poll() is None
    save(mod, version % "v3", 4)
    os.kill(master, signal.SIGHUP)
    wait_until("the fixed code to answer", lambda: server.get("/") == (200, b"v3"), READY_TIMEOUT)
    assert server.proc.poll() is None


def test_hup_with_a_log_file_that_cannot_be_opened_keeps_the_server(
    appdir: Path, start: Callable[..., Server]
) -> None:
    """Gunicorn's master dies when the reloaded configuration's log cannot be
    set up; here the reload fails as a whole, the old logging and workers
    carry on, and a later good configuration is taken."""
    conf = appdir / "logconf.py"
    conf.write_text("errorlog = '-'\n")
    server = start("-c", str(conf), "serveapp")
    server.wait_ready("/ready")
    master = server.proc.pid
    conf.write_text(f"errorlog = {str(appdir / 'no-such-dir' / 'error.log')!r}\n")
    os.kill(master, signal.SIGHUP)
    wait_until("the reload failure on the old error log",
             lambda: "Reload failed; the running workers keep serving" in server.stderr)
    assert "No such file or directory" in server.stderr
    status, body = server.get("/still") or (0, b"")
    assert status == 200 and body.startswith(b"/still")
    assert server.proc.poll() is None
    good = appdir / "error.log"
    conf.write_text(f"errorlog = {str(good)!r}\n")
    os.kill(master, signal.SIGHUP)
    wait_until("the new workers' lines in the new error log",
             lambda: good.exists() and "Booting worker" in good.read_text())
    assert server.proc.poll() is None


def test_hup_after_a_relative_chdir_rereads_a_relative_config(appdir: Path, start: Callable[..., Server]) -> None:
    """-c, --chdir and --pythonpath given relative: the master has moved into
    --chdir since it started, and HUP must still find the same config file and
    load a new APP from the same directory."""
    project = appdir / "project"
    (project / "lib").mkdir(parents=True)
    (project / "lib" / "hup_helper.py").write_text("WHERE = 'lib'\n")
    for name in ("one", "two"):
        (project / f"hupapp_{name}.py").write_text(
            "import os\nimport hup_helper\n"
            "def application(e, s):\n    s('200 OK', [])\n"
            f"    return [('{name} %s %s %s' % (os.environ['GREETING'], hup_helper.WHERE,"
            " os.path.basename(os.getcwd()))).encode()]\n"
        )
    (appdir / "conf").mkdir()
    conf = appdir / "conf" / "hup.conf.py"
    conf.write_text("workers = 1\nwsgi_app = 'hupapp_one'\nraw_env = ['GREETING=first']\n")
    server = start("--chdir", "project", "-c", "conf/hup.conf.py", "--pythonpath", "lib")
    assert server.wait_ready() == (200, b"one first lib project")

    conf.write_text("workers = 1\nwsgi_app = 'hupapp_two'\nraw_env = ['GREETING=second']\n")
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_until("the new APP and environment after HUP",
             lambda: server.get("/") == (200, b"two second lib project"))
    assert "Reload failed" not in server.stderr
    assert server.proc.poll() is None


# --- --reload: a changed module restarts the worker -----------------------------------


def test_reload_picks_up_changed_code(appdir: Path, start: Callable[..., Server]) -> None:
    mod = appdir / "reloadapp.py"
    mod.write_text("def application(e, s):\n    s('200 OK', [])\n    return [b'v1']\n")
    server = start("--reload", "reloadapp")
    assert server.wait_ready() == (200, b"v1")
    # Saved whole (the watcher never sees a half-written file) with the mtime
    # moved on by 2 s, so the bytecode cache, which compares whole seconds and
    # the size (the same here), is not taken for the new source.
    save(mod, "def application(e, s):\n    s('200 OK', [])\n    return [b'v2']\n", 2)
    wait_until("the new code to answer", lambda: server.get("/") == (200, b"v2"), READY_TIMEOUT)
    # The worker says which file made it leave. Usually reloadapp.py; in a
    # shared development checkout another build may rewrite one of
    # fastwsgi's own extension modules at that moment, and that is then the
    # change seen first (the fresh worker still imports the new reloadapp).
    m = re.search(r"\[INFO\] Worker reloading: (.*) modified$", server.stderr, re.M)
    assert m, server.stderr
    assert m.group(1).endswith("reloadapp.py") or Path(m.group(1)).parent == Path(SRC) / "fastwsgi", m.group(1)
    assert server.proc.poll() is None


def test_reload_extra_file_change_restarts_the_worker(appdir: Path, start: Callable[..., Server]) -> None:
    """A template the app reads at import is not a module: --reload-extra-file
    (a glob here) makes its edit restart the worker, as in Gunicorn."""
    (appdir / "templates").mkdir()
    tpl = appdir / "templates" / "page.txt"
    tpl.write_text("page v1")
    (appdir / "tplapp.py").write_text(
        "TEXT = open('templates/page.txt').read().encode()\n"
        "def application(e, s):\n    s('200 OK', [])\n    return [TEXT]\n"
    )
    server = start("--reload", "--reload-extra-file", "templates/*.txt", "tplapp")
    assert server.wait_ready() == (200, b"page v1")
    save(tpl, "page v2", 2)
    wait_until("the edited template to be served", lambda: server.get("/") == (200, b"page v2"),
             READY_TIMEOUT)
    assert re.search(r"\[INFO\] Worker reloading: .*page\.txt modified$", server.stderr, re.M), (
        server.stderr
    )
    assert server.proc.poll() is None


def save(path: Path, text: str, mtime_step: float) -> None:
    """Write whole and rename into place (as editors save), the mtime moved
    on so neither the watcher nor the bytecode cache can miss the change."""
    st = path.stat()
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.utime(tmp, (st.st_atime, st.st_mtime + mtime_step))
    os.replace(tmp, path)


def test_reload_survives_a_broken_edit(appdir: Path, start: Callable[..., Server]) -> None:
    """With --reload a syntax error in a saved file does not stop the server:
    the worker answers 500 with the error until the fix is saved."""
    mod = appdir / "reloadbroken.py"
    mod.write_text("def application(e, s):\n    s('200 OK', [])\n    return [b'v1']\n")
    server = start("--reload", "reloadbroken")
    assert server.wait_ready() == (200, b"v1")
    save(mod, "def application(e, s:\n", 2)

    def error_page() -> bytes | None:
        got = server.get("/")
        return got[1] if got is not None and got[0] == 500 else None

    body = wait_until("the error page", error_page, READY_TIMEOUT)
    assert body.startswith(b"Failed to load application 'reloadbroken': SyntaxError")
    assert "[ERROR] Failed to load application 'reloadbroken': SyntaxError" in server.stderr
    assert "Traceback" not in server.stderr
    save(mod, "def application(e, s):\n    s('200 OK', [])\n    return [b'v2']\n", 4)
    wait_until("the fixed code to answer", lambda: server.get("/") == (200, b"v2"), READY_TIMEOUT)
    assert server.proc.poll() is None


# --- statsd ------------------------------------------------------------------------------


def test_statsd_metrics_for_a_real_request(appdir: Path, start: Callable[..., Server]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(WAIT_TIMEOUT)
        server = start("--statsd-host", f"127.0.0.1:{udp.getsockname()[1]}", "--statsd-prefix", "web",
                       "serveapp")
        server.wait_ready("/ready")
        got: set[str] = set()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while "web.gunicorn.request.status.200:1|c" not in got or not any(
                m.startswith("web.gunicorn.request.duration:") for m in got):
            assert time.monotonic() < deadline, got
            got.add(udp.recv(512).decode())
    assert "web.gunicorn.requests:1|c" in got
    # The master's worker-count gauge, as Gunicorn's arbiter sends it.
    assert "web.gunicorn.workers:1|g" in got


def test_backlog_metric_reports_connections_waiting_for_a_worker(
    appdir: Path, start: Callable[..., Server]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(WAIT_TIMEOUT)
        server = start("--statsd-host", f"127.0.0.1:{udp.getsockname()[1]}",
                       "--enable-backlog-metric", "serveapp")
        server.wait_ready("/ready")

        def wait_metric(value: str) -> None:
            deadline = time.monotonic() + WAIT_TIMEOUT
            seen: list[str] = []
            while f"gunicorn.backlog:{value}|ms" not in seen:
                assert time.monotonic() < deadline, seen
                seen.append(udp.recv(512).decode())

        wait_metric("0.000")
        [worker] = children(server.proc.pid)
        clients: list[socket.socket] = []
        os.kill(worker, signal.SIGSTOP)  # nobody accepts: connections queue up
        try:
            for _ in range(3):
                clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            wait_metric("3.000")
        finally:
            os.kill(worker, signal.SIGCONT)
            for c in clients:
                c.close()
        wait_metric("0.000")


def test_syslog_gets_the_masters_and_the_workers_lines(appdir: Path, start: Callable[..., Server]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(WAIT_TIMEOUT)
        server = start("--log-syslog", "--log-syslog-to", f"udp://127.0.0.1:{udp.getsockname()[1]}",
                       "--log-syslog-prefix", "web", "serveapp")
        server.wait_ready("/ready")
        got: list[str] = []
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not any("gunicorn.web.access:" in m and "GET /ready" in m for m in got):
            assert time.monotonic() < deadline, got
            got.append(udp.recv(2048).decode())
    master = server.proc.pid
    assert any(re.fullmatch(rf"<14>gunicorn\.web\.error: \[{master}\] Listening at: .*\x00", m)
               for m in got), got
    access = next(m for m in got if "GET /ready" in m)
    worker = int(re.match(r"<14>gunicorn\.web\.access: \[(\d+)\] ", access).group(1))  # type: ignore[union-attr]
    assert worker != master


# --- where the app and its output live ------------------------------------------------------


def test_chdir_pythonpath_and_captured_output(tmp_path: Path, start: Callable[..., Server]) -> None:
    """Started from elsewhere: --chdir finds the app module, --pythonpath a helper
    package; with --capture-output the app's print() lands in the error log."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cli_helper_mod.py").write_text("GREETING = 'from pythonpath'\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "chdirapp.py").write_text(
        "import os, sys\nimport cli_helper_mod\n"
        "def application(environ, start_response):\n"
        "    print('printed by the app', flush=True)\n"
        "    start_response('200 OK', [])\n"
        "    return [(cli_helper_mod.GREETING + ' in ' + os.path.basename(os.getcwd())).encode()]\n"
    )
    errlog = tmp_path / "error.log"
    server = start("--chdir", str(project), "--pythonpath", str(site), "--error-logfile", str(errlog),
                   "--capture-output", "chdirapp")
    assert server.wait_ready() == (200, b"from pythonpath in project")
    wait_until("the app's print() in the error log", lambda: "printed by the app" in errlog.read_text())
    assert "[INFO] Booting worker" in errlog.read_text()
    assert "printed by the app" not in server.stdout + server.stderr
