"""The mutation list ``scripts/mutate.py`` runs: each entry breaks one promise.

``old`` must occur exactly once in ``path``; ``tests`` are pytest node ids
or files (kept narrow: a .pyx mutation costs a rebuild). Add an entry with
every behaviour you promise; docs/testing.md has the last run's results.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    promise: str


IT = "tests/integration/"
E2E = IT + "test_settings_e2e.py"
HOSTILE = IT + "test_hostile.py"

MUTATIONS: list[Mutation] = [
    # --- the audit's six survivors -------------------------------------------------------
    Mutation(
        "response-no-date",
        "src/fastwsgi/_response.pyx",
        "cdef bytes date = b\"\" if self._app_date else _date_header()",
        "cdef bytes date = b\"\"",
        ("tests/unit/test_response.py::test_every_kind_of_response_carries_one_date_of_now",
         E2E + "::test_every_response_carries_a_date_header"),
        "RFC 9110 6.6.1: Date on every response",
    ),
    Mutation(
        "response-no-date-e2e",
        "src/fastwsgi/_response.pyx",
        "cdef bytes date = b\"\" if self._app_date else _date_header()",
        "cdef bytes date = b\"\"",
        (E2E + "::test_every_response_carries_a_date_header",),
        "a running server's answers carry Date",
    ),
    Mutation(
        "conn-no-linger-after-parse-error",
        "src/fastwsgi/_conn.pyx",
        "            self.linger = True\n            self._log_rejected(exc, None, self._answer(exc))",
        "            self.linger = False\n            self._log_rejected(exc, None, self._answer(exc))",
        (HOSTILE + "::test_close_after_a_parse_error_drains_instead_of_resetting",),
        "lingering close after a parse error (the 4xx is not destroyed by a reset)",
    ),
    Mutation(
        "config-jitter-not-passed",
        "src/fastwsgi/config.py",
        "            parser=parser,\n",
        "            parser=parser,\n            max_requests_jitter=0,\n",
        (IT + "test_arbiter_lifecycle.py::test_max_requests_jitter_spreads_the_limit",),
        "--max-requests-jitter reaches the workers",
    ),
    Mutation(
        "config-field-size-not-passed",
        "src/fastwsgi/config.py",
        "        parser = _fill(ParserSettings, v)\n",
        "        parser = _fill(ParserSettings, v, limit_request_field_size=8190)\n",
        (E2E,),
        "--limit-request-field-size reaches the parser",
    ),
    Mutation(
        "sock-backlog-ignored",
        "src/fastwsgi/sock.py",
        "        sock.bind(sockaddr)\n        sock.listen(backlog)",
        "        sock.bind(sockaddr)\n        sock.listen(2048)",
        ("tests/unit/test_sock.py::test_reuse_port_and_backlog",),
        "--backlog sets the TCP listen queue",
    ),
    Mutation(
        "sock-backlog-ignored-e2e",
        "src/fastwsgi/sock.py",
        "        sock.bind(sockaddr)\n        sock.listen(backlog)",
        "        sock.bind(sockaddr)\n        sock.listen(2048)",
        (E2E + "::test_setting_end_to_end[backlog]",),
        "--backlog shows in the running server's listener",
    ),
    Mutation(
        "heartbeat-booted-zeroes-stamp",
        "src/fastwsgi/heartbeat.py",
        "        _FLAG.pack_into(self._mm, self._offset + _STAMP.size, _BOOTED if booted else _BOOTING)",
        "        _FLAG.pack_into(self._mm, self._offset + _STAMP.size, _BOOTED if booted else _BOOTING)"
        "; _STAMP.pack_into(self._mm, self._offset, 0.0)",
        ("tests/unit/test_heartbeat.py::test_booted_flag_is_shared_and_reset_on_reuse",),
        "mark_booted() leaves the heartbeat stamp alone",
    ),
    # --- the weak tests' promises ---------------------------------------------------------
    Mutation(
        "heartbeat-note-clobbers-stamp",
        "src/fastwsgi/heartbeat.py",
        "        start = self._offset + _NOTE_AT + _NOTE_LEN.size\n        self._mm[start:start + len(data)] = data",
        "        start = self._offset\n        self._mm[start:start + len(data)] = data",
        ("tests/unit/test_heartbeat.py::"
         "test_a_note_left_by_the_child_is_read_by_the_parent_and_cleared_on_reuse",),
        "a note never overwrites the stamp",
    ),
    Mutation(
        "conn-keep-after-parse-error",
        "src/fastwsgi/_conn.pyx",
        "            self._log_rejected(exc, None, self._answer(exc))\n            return False\n",
        "            self._log_rejected(exc, None, self._answer(exc))\n            return True\n",
        (HOSTILE + "::test_rejected_connection_is_closed_not_kept",),
        "dead after error: a connection is closed after a parse error",
    ),
    Mutation(
        "conn-no-drain-on-close",
        "src/fastwsgi/_conn.pyx",
        "        while True:\n            r = recv(self.fd, scratch, 65536, MSG_DONTWAIT)",
        "        while False:\n            r = recv(self.fd, scratch, 65536, MSG_DONTWAIT)",
        (HOSTILE + "::test_close_after_a_parse_error_drains_instead_of_resetting",),
        "lingering close drains unread input (no RST under the response)",
    ),
    Mutation(
        "conn-linger-holds-the-gil",
        "src/fastwsgi/_conn.pyx",
        "        with nogil:\n            r = poll(&pfd, 1, ms)",
        "        if True:\n            r = poll(&pfd, 1, ms)",
        (IT + "test_workers_gthread.py::test_lingering_thread_leaves_the_pool_to_others",),
        "a lingering gthread thread leaves the pool (and the GIL) to others",
    ),
    Mutation(
        "gthread-never-lingers",
        "src/fastwsgi/workers/gthread.py",
        "        return self.nconns < self.nthreads and self.alive and not self.jobs",
        "        return False",
        (IT + "test_workers_gthread.py::test_lingering_thread_leaves_the_pool_to_others",),
        "an unsaturated gthread pool lingers on a keep-alive connection",
    ),
    Mutation(
        "conn-sendfile-setting-ignored",
        "src/fastwsgi/_conn.pyx",
        "        self.use_sendfile = settings.sendfile",
        "        self.use_sendfile = False",
        (IT + "test_wsgi_behaviour.py::test_100mib_download_intact",),
        "file_wrapper goes out with sendfile(2) when sendfile is on",
    ),
    Mutation(
        "conn-sendfile-setting-ignored-unit",
        "src/fastwsgi/_conn.pyx",
        "        self.use_sendfile = settings.sendfile",
        "        self.use_sendfile = False",
        ("tests/unit/test_conn_syscalls.py::test_sendfile_setting_decides_the_system_call",),
        "file_wrapper goes out with sendfile(2) (one Connection under strace)",
    ),
    Mutation(
        "conn-body-error-bare-close",
        "src/fastwsgi/_conn.pyx",
        "            if not resp.headers_sent and (<object>exc).status is not None:\n"
        "                err_sent[0] = self._answer(exc)",
        "            if False:\n                err_sent[0] = self._answer(exc)",
        (IT + "test_slow_clients.py::test_stalled_body_is_cut_off",),
        "a stalled body is answered 408, not a bare close",
    ),
    # --- settings end to end ---------------------------------------------------------------
    Mutation(
        "config-request-line-not-passed",
        "src/fastwsgi/config.py",
        "        parser = _fill(ParserSettings, v)\n",
        "        parser = _fill(ParserSettings, v, limit_request_line=4094)\n",
        (E2E,),
        "--limit-request-line reaches the parser",
    ),
    Mutation(
        "config-headers-total-not-passed",
        "src/fastwsgi/config.py",
        "        parser = _fill(ParserSettings, v)\n",
        "        parser = _fill(ParserSettings, v, limit_request_headers_total=65536)\n",
        (E2E,),
        "--limit-request-headers-total reaches the parser",
    ),
    Mutation(
        "config-casefold-not-passed",
        "src/fastwsgi/config.py",
        "        parser = _fill(ParserSettings, v)\n",
        "        parser = _fill(ParserSettings, v, casefold_http_method=False)\n",
        (E2E,),
        "--casefold-http-method reaches the parser",
    ),
    Mutation(
        "config-strip-spaces-not-passed",
        "src/fastwsgi/config.py",
        "        parser = _fill(ParserSettings, v)\n",
        "        parser = _fill(ParserSettings, v, strip_header_spaces=False)\n",
        (E2E,),
        "--strip-header-spaces reaches the parser",
    ),
    Mutation(
        "config-loglevel-not-passed",
        "src/fastwsgi/config.py",
        "            LogSettings,\n            v,\n",
        "            LogSettings,\n            v,\n            loglevel=\"info\",\n",
        (E2E,),
        "--log-level reaches logging",
    ),
    Mutation(
        "config-syslog-facility-not-passed",
        "src/fastwsgi/config.py",
        "            LogSettings,\n            v,\n",
        "            LogSettings,\n            v,\n            syslog_facility=\"user\",\n",
        (E2E,),
        "--log-syslog-facility reaches the syslog handler",
    ),
    Mutation(
        "config-dogstatsd-tags-not-passed",
        "src/fastwsgi/config.py",
        "            LogSettings,\n            v,\n",
        "            LogSettings,\n            v,\n            dogstatsd_tags=\"\",\n",
        (E2E,),
        "--dogstatsd-tags reach every metric",
    ),
    Mutation(
        "parser-field-size-unchecked",
        "src/fastwsgi/_parser.pyx",
        "            flen = (self.sc_field_len if cont else 0) + ll + 1\n            if flen > lim_field:",
        "            flen = (self.sc_field_len if cont else 0) + ll + 1\n            if False:",
        (E2E, "tests/unit/test_parser.py"),
        "a complete field over limit_request_field_size is refused 431",
    ),
    Mutation(
        "worker-max-requests-ignored",
        "src/fastwsgi/workers/base.py",
        "        if self.nr >= self.max_requests:",
        "        if False:",
        (IT + "test_arbiter_lifecycle.py::test_max_requests_recycles_the_worker",),
        "--max-requests recycles the worker",
    ),
    Mutation(
        "response-error-no-date",
        "src/fastwsgi/_response.pyx",
        "    parts.append(_date_header())\n    parts.append(b\"Connection: keep-alive\\r\\n\"",
        "    parts.append(b\"Connection: keep-alive\\r\\n\"",
        ("tests/unit/test_response.py", E2E + "::test_every_response_carries_a_date_header"),
        "the server's own error answers carry Date",
    ),
]
