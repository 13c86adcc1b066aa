"""APP parsing and loading: Gunicorn's module:expr rules, checked before fork."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastwsgi.app import AppLoader, AppSpec, parse_app_uri
from fastwsgi.errors import AppImportError


@pytest.mark.parametrize(
    ("uri", "spec"),
    [
        ("mod", AppSpec("mod", ("application",))),
        ("pkg.mod:app", AppSpec("pkg.mod", ("app",))),
        ("mod:obj.wsgi", AppSpec("mod", ("obj", "wsgi"))),
        ("mod:create_app()", AppSpec("mod", ("create_app",), True)),
        ("mod:make('prod', n=2, flags=[1, 2])", AppSpec("mod", ("make",), True, ("prod",), {"n": 2, "flags": [1, 2]})),
        (" mod:f( 1 , None ) ", AppSpec("mod", ("f",), True, (1, None))),
    ],
)
def test_parse(uri: str, spec: AppSpec) -> None:
    assert parse_app_uri(uri) == spec


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "not of the form"),
        (":app", "not of the form"),
        ("mod:", "not of the form"),
        ("my-mod:app", "not a module name"),
        ("mod:app(", "cannot parse"),
        ("mod:f(os.system('x'))", "arguments must be literals"),
        ("mod:f(*args)", "arguments must be literals"),
        ("mod:f(**kw)", "arguments must be literals"),
        ("mod:a[0]", "not an attribute name or a call"),
        ("mod:f()()", "not an attribute name or a call"),
        ("mod:1", "not an attribute name"),
    ],
)
def test_parse_rejects(uri: str, message: str) -> None:
    with pytest.raises(AppImportError, match=message):
        parse_app_uri(uri)


@pytest.fixture
def appdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory of throwaway app modules, with unique names, on sys.path."""
    before = set(sys.modules)
    saved_path = list(sys.path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "appmod_t1.py").write_text(
        "def application(environ, start_response):\n    return [b'app']\n"
        "class Obj:\n    def wsgi(self, e, s):\n        return [b'obj']\n"
        "obj = Obj()\n"
        "def create(name='x', n=1):\n"
        "    def app(e, s):\n        return [f'{name}{n}'.encode()]\n    return app\n"
        "def bad_factory():\n    raise RuntimeError('nope')\n"
        "not_callable = 3\n"
        "nothing = None\n"
    )
    (tmp_path / "appmod_raises.py").write_text("raise ValueError('import-time failure')\n")
    (tmp_path / "appmod_imports.py").write_text("import appmod_missing_dep\n")
    pkg = tmp_path / "apppkg_t1"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "wsgi.py").write_text("def application(e, s):\n    return [b'pkg']\n")
    yield tmp_path
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("uri", "body"),
    [
        ("appmod_t1", b"app"),
        ("appmod_t1:application", b"app"),
        ("appmod_t1:obj.wsgi", b"obj"),
        ("appmod_t1:create()", b"x1"),
        ("appmod_t1:create('prod', n=3)", b"prod3"),
        ("apppkg_t1.wsgi", b"pkg"),
    ],
)
def test_load(uri: str, body: bytes, appdir: Path) -> None:
    loader = AppLoader(uri)
    loader.prepare()
    loader.check()
    app = loader.load()
    assert app({}, None) == [body]
    assert loader() is not None  # the loader is itself the zero-argument factory


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("appmod_none_such:app", "no module named 'appmod_none_such'"),
        ("apppkg_t1.nothere:app", "no module named 'apppkg_t1.nothere'"),
    ],
)
def test_check_catches_missing_modules_without_running_code(uri: str, message: str, appdir: Path) -> None:
    loader = AppLoader(uri)
    loader.prepare()
    with pytest.raises(AppImportError, match=message):
        loader.check()


def test_check_runs_no_application_code(appdir: Path) -> None:
    loader = AppLoader("appmod_raises:app")
    loader.prepare()
    loader.check()  # found; its import-time failure is the worker's to report
    assert "appmod_raises" not in sys.modules
    with pytest.raises(AppImportError, match="ValueError: import-time failure"):
        loader.load()


@pytest.mark.parametrize(
    ("uri", "detail"),
    [
        ("appmod_t1:missing", "cannot find 'missing' in module 'appmod_t1'"),
        ("appmod_t1:obj.missing", "cannot find 'missing' in module 'appmod_t1'"),
        ("appmod_t1:not_callable", "application object must be callable"),
        ("appmod_t1:not_callable()", "not_callable is not callable"),
        ("appmod_t1:nothing", "the application is None"),
        # The factory's own line is named, not the loader's.
        ("appmod_t1:bad_factory()", "the factory bad_factory() raised RuntimeError: nope (appmod_t1.py:12)"),
        ("appmod_imports", "ModuleNotFoundError: No module named 'appmod_missing_dep' (appmod_imports.py:1)"),
        ("appmod_raises", "ValueError: import-time failure (appmod_raises.py:1)"),
        ("appmod_deep", "ZeroDivisionError: division by zero (appmod_deep.py:3)"),
        ("appmod_stdlib", "JSONDecodeError: Expecting value: line 1 column 1 (char 0) (appmod_stdlib.py:2)"),
        ("appmod_syntax", "SyntaxError: invalid syntax (appmod_syntax.py, line 1)"),
    ],
)
def test_load_errors_are_one_line_naming_app_and_cause(uri: str, detail: str, appdir: Path) -> None:
    (appdir / "appmod_deep.py").write_text("def f():\n    x = 0\n    return 1 / x\nf()\n")
    (appdir / "appmod_stdlib.py").write_text("import json\njson.loads('')\n")
    (appdir / "appmod_syntax.py").write_text("def app(:\n")
    loader = AppLoader(uri)
    loader.prepare()
    with pytest.raises(AppImportError) as info:
        loader.load()
    assert str(info.value) == f"Failed to load application {uri!r}: {detail}"
    assert "\n" not in str(info.value)


def test_describe_exception_names_the_innermost_frame_outside_the_loader(tmp_path: Path) -> None:
    from fastwsgi.app import describe_exception

    try:
        {}["k"]
    except KeyError as exc:
        line = sys._getframe().f_lineno - 2
        assert describe_exception(exc) == f"KeyError: 'k' ({os.path.relpath(__file__)}:{line})"
    assert describe_exception(RuntimeError()) == "RuntimeError"  # never raised: no frames


def test_describe_exception_without_sysconfig_still_names_the_app_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker that dropped to --user may be unable to import sysconfig (a
    # stdlib under /root/.pyenv that "nobody" cannot read): the description
    # must still be the app's own error and place, not the lookup's failure.
    import json

    import fastwsgi.app as appmod

    monkeypatch.setattr(appmod, "_install_dirs", None)
    monkeypatch.setitem(sys.modules, "sysconfig", None)  # import raises ImportError
    try:
        json.loads("")
    except ValueError as exc:
        line = sys._getframe().f_lineno - 2
        text = appmod.describe_exception(exc)
    assert text.startswith("JSONDecodeError: Expecting value")
    assert text.endswith(f"({os.path.relpath(__file__)}:{line})")  # json's frames skipped
    stdlib, site = appmod._install_dirs  # type: ignore[misc]
    assert stdlib == os.path.dirname(os.__file__) + os.sep
    assert all(d.startswith(stdlib) for d in site)


def test_chdir_and_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved_path = list(sys.path)
    monkeypatch.chdir("/")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "appmod_pp.py").write_text("def application(e, s):\n    return [b'pp']\n")
    (tmp_path / "appmod_cd.py").write_text("def application(e, s):\n    return [b'cd']\n")
    try:
        loader = AppLoader("appmod_cd", chdir=str(tmp_path), pythonpath=[str(tmp_path / "site")])
        loader.prepare()
        assert os.getcwd() == str(tmp_path)
        assert sys.path[0] == str(tmp_path / "site")
        assert loader.load()({}, None) == [b"cd"]
        pp = AppLoader("appmod_pp")
        pp.check()
        assert pp.load()({}, None) == [b"pp"]
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("appmod_cd", None)
        sys.modules.pop("appmod_pp", None)


def test_bad_chdir(tmp_path: Path) -> None:
    with pytest.raises(AppImportError, match="cannot change directory to .*No such file"):
        AppLoader("x", chdir=str(tmp_path / "nope")).prepare()


def test_code_watcher_sees_a_changed_module_file(appdir: Path) -> None:
    from fastwsgi.app import CodeWatcher

    loader = AppLoader("appmod_t1")
    loader.prepare()
    loader.load()
    watcher = CodeWatcher(on_change=lambda path: None)
    assert watcher.changed() is None  # baseline
    assert watcher.changed() is None  # nothing moved
    path = appdir / "appmod_t1.py"
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    assert watcher.changed() == str(path)
    assert watcher.changed() is None  # the change is recorded: reported once


def test_code_watcher_sees_a_rewrite_within_one_clock_tick(appdir: Path) -> None:
    from fastwsgi.app import CodeWatcher

    loader = AppLoader("appmod_t1")
    loader.prepare()
    loader.load()
    watcher = CodeWatcher(on_change=lambda path: None)
    watcher.changed()
    path = appdir / "appmod_t1.py"
    st = path.stat()
    path.write_text(path.read_text() + "# edited\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: a coarse clock
    assert watcher.changed() == str(path)
    # Saved by rename (a new inode), even with the old size and mtime.
    watcher.changed()
    st = path.stat()
    tmp = appdir / "appmod_t1.py.new"
    tmp.write_text(path.read_text())
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    assert watcher.changed() == str(path)


def test_code_watcher_watches_extra_files_and_globs_expanded_at_each_scan(tmp_path: Path) -> None:
    from fastwsgi.app import CodeWatcher

    plain = tmp_path / "settings.yaml"
    plain.write_text("a: 1\n")
    (tmp_path / "tpl" / "sub").mkdir(parents=True)
    old = tmp_path / "tpl" / "index.html"
    old.write_text("<p>")
    watcher = CodeWatcher(
        on_change=lambda path: None,
        extra_files=[str(plain), str(tmp_path / "tpl" / "**" / "*.html"), str(tmp_path / "gone.txt")],
    )
    assert watcher.changed() is None  # baseline (a missing plain path is skipped)
    new = tmp_path / "tpl" / "sub" / "late.html"
    new.write_text("<p>")
    assert watcher.changed() is None  # created after start: recorded, not a change
    new.write_text("<p>edited</p>")
    assert watcher.changed() == str(new)  # its first edit is
    old.write_text("<p>edited</p>")
    assert watcher.changed() == str(old)
    plain.write_text("a: 2\n")
    assert watcher.changed() == str(plain)
    (tmp_path / "tpl" / "notes.txt").write_text("x")  # outside the pattern
    assert watcher.changed() is None


def test_loader_passes_its_extra_files_to_the_watcher(
    appdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastwsgi.app import CodeWatcher

    monkeypatch.setattr(CodeWatcher, "start", lambda self: None)
    extra = tmp_path / "conf.toml"
    extra.write_text("x = 1\n")
    loader = AppLoader("appmod_t1", reload=True, extra_files=[str(extra)])
    loader.prepare()
    loader.load()
    assert loader.watcher is not None
    extra.write_text("x = 2\n")
    assert loader.watcher.changed() == str(extra)


def test_reload_baseline_is_taken_before_load_returns(appdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit made once the worker serves must be seen even if the watcher
    thread has not run yet (a starved thread on a busy machine)."""
    from fastwsgi.app import CodeWatcher

    monkeypatch.setattr(CodeWatcher, "start", lambda self: None)  # the thread never gets to run
    loader = AppLoader("appmod_t1", reload=True)
    loader.prepare()
    loader.load()
    watcher = loader.watcher
    assert watcher is not None
    path = appdir / "appmod_t1.py"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert watcher.changed() == str(path)


def test_with_reload_a_broken_app_is_served_as_an_error_and_its_file_watched(
    appdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastwsgi.app import CodeWatcher

    monkeypatch.setattr(CodeWatcher, "start", lambda self: None)
    (appdir / "appmod_broken.py").write_text("def application(e, s:\n")
    loader = AppLoader("appmod_broken", reload=True)
    loader.prepare()
    app = loader.load()
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app({}, lambda status, headers: seen.append((status, headers))))
    assert seen[0][0] == "500 Internal Server Error"
    assert body.startswith(b"Failed to load application 'appmod_broken': SyntaxError")
    assert b"Traceback" in body  # the page is for the developer
    watcher = loader.watcher
    assert watcher is not None and str(appdir / "appmod_broken.py") in watcher.extra_files
    (appdir / "appmod_broken.py").write_text("def application(e, s):\n    return [b'fixed']\n")
    assert watcher.changed() == str(appdir / "appmod_broken.py")
    # Without --reload the same failure is raised, and so is one with nothing to watch.
    with pytest.raises(AppImportError):
        AppLoader("appmod_raises").load()
    with pytest.raises(AppImportError, match="no module named 'appmod_nowhere'"):
        AppLoader("appmod_nowhere", reload=True).load()
