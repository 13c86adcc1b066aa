"""A config file defining every server hook; each appends one line to $HOOK_LOG."""

import os

_LOG = os.environ["HOOK_LOG"]


def _w(line):
    with open(_LOG, "a") as f:
        f.write(line + "\n")


def on_starting(server):
    _w(f"on_starting {server.pid} {server.num_workers} {server.cfg.workers}")


def when_ready(server):
    _w(f"when_ready {len(server.LISTENERS)}")


def pre_fork(server, worker):
    _w(f"pre_fork {worker.age}")


def post_fork(server, worker):
    _w(f"post_fork {worker.pid} {worker.age} {worker.ppid == server.pid}")


def post_worker_init(worker):
    _w(f"post_worker_init {worker.pid} {worker.wsgi is not None}")


def child_exit(server, worker):
    _w(f"child_exit {worker.pid}")


def worker_exit(server, worker):
    _w(f"worker_exit {worker.pid}")


def nworkers_changed(server, new_value, old_value):
    _w(f"nworkers_changed {new_value} {old_value}")


def on_reload(server):
    _w("on_reload")


def worker_int(worker):
    _w(f"worker_int {worker.pid}")


def on_exit(server):
    _w("on_exit")


def worker_abort(worker):
    _w(f"worker_abort {worker.pid}")
