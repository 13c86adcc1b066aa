"""A short, bounded run of the atheris parser target (see fuzz_parser.py for
the long run). It fails if atheris finds a crash or an invariant break."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import gunicorn_requests

import fastwsgi

pytest.importorskip("atheris")

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_short_fuzz_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = sorted(gunicorn_requests().glob("*/*.http"))
    assert seeds, "the shared corpus has no .http seeds"
    for i, seed in enumerate(seeds):
        # first byte = settings flags (see fuzz_parser.settings_for)
        (corpus / f"seed{i}").write_bytes(bytes([i % 256]) + seed.read_bytes())
    (corpus / "plain").write_bytes(b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    env = dict(os.environ, PYTHONPATH=str(Path(fastwsgi.__file__).parent.parent))
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_parser.py"),
            "-runs=2000",
            "-max_total_time=20",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    # libFuzzer prints INFO lines as it starts; "Done N runs" only at the end.
    done = re.search(r"^Done (\d+) runs in", tail, re.MULTILINE)
    assert done and int(done.group(1)) > 0, tail
    assert not list(tmp_path.glob("crash-*")), tail
