"""Build the compiled core of fastwsgi.

Each extension is one ``.pyx`` under ``src/fastwsgi`` with a ``.pxd`` declaring
its C-level API. Directives are set once here.

Build switches (environment variables):

* ``FASTWSGI_DEBUG=1``: compile with ``-O0 -g``, Cython line tracing off but
  ``annotate=True`` (writes ``*.html`` beside each ``.pyx``) and
  ``CYTHON_TRACE``-free debug asserts kept (no ``-DNDEBUG``).
* ``FASTWSGI_ANNOTATE=1``: only write the annotation HTML.
* ``FASTWSGI_SANITIZE=1``: build with AddressSanitizer + UBSan (for fuzzing;
  run with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``).
* ``FASTWSGI_ONLY=_parser,_response``: build just these extensions (handy
  while developing one module).
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

EXTENSIONS = ["_parser", "_response", "_conn", "_selector"]

debug = os.environ.get("FASTWSGI_DEBUG") == "1"
annotate = debug or os.environ.get("FASTWSGI_ANNOTATE") == "1"
sanitize = os.environ.get("FASTWSGI_SANITIZE") == "1"
only = [n for n in os.environ.get("FASTWSGI_ONLY", "").split(",") if n]

cflags = ["-O0", "-g3"] if debug else ["-O2"]
ldflags: list[str] = []
if sanitize:
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    ldflags += ["-fsanitize=address,undefined"]

extensions = [
    Extension(
        f"fastwsgi.{name}",
        [f"src/fastwsgi/{name}.pyx"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        undef_macros=["NDEBUG"] if debug else [],
    )
    for name in EXTENSIONS
    if (not only or name in only) and os.path.exists(f"src/fastwsgi/{name}.pyx")
]


class build_ext(_build_ext):
    """Cythonize when extensions are built, not whenever setup.py runs: making
    the sdist (which ships the .pyx, not the .c) then costs no Cython pass."""

    def run(self) -> None:
        done = cythonize(
            self.extensions,
            compiler_directives={
                "language_level": 3,
                "embedsignature": True,
                "binding": False,
            },
            annotate=annotate,
            include_path=["src"],
        )
        # Same extensions, now naming the .c files; setuptools has already
        # prepared these objects, so only their sources change.
        for ext, cythonized in zip(self.extensions, done, strict=True):
            ext.sources = cythonized.sources
        super().run()


setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
