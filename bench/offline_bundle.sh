#!/bin/bash
# Pack what the benchmark suite needs for a machine with no network access:
# hey, wrk and nginx with the shared libraries they load, a fastwsgi wheel
# built for the target's Python, and the Gunicorn and Flask wheels; with
# --peers also the servers issue 8 compares against (bjoern, built here with
# the libev it loads, uWSGI as pyuwsgi, granian).
#
# Why: lent benchmark machines (the 16-CPU scaling runs in bench/README.md)
# can reach nothing, have no load generator or nginx, and may run another
# Python than this one. The binaries come from this machine's Debian
# packages; the target needs glibc at least as new as this one's.
#
# usage: bench/offline_bundle.sh DIR PYTHON [--peers]
#   DIR     where to build the bundle (e.g. .devbundle, git-ignored by you)
#   PYTHON  an interpreter of the target's version (e.g. python3.12), used
#           to build the fastwsgi wheel and pick the wheels' tags
#   --peers also pack bjoern, uWSGI and granian (bjoern needs libev-dev here)
# Then on the target, from the checkout's root:
#   bash DIR/run.sh OUTDIR     (runs bench/scaling.py and a pinned run.py,
#                               writes OUTDIR/results.tar.gz)
#   RUN=peers bash DIR/run.sh OUTDIR
#                              (only the pinned issue-8 comparison: one
#                               worker of each server, the C/Rust peers too)
set -euo pipefail
DIR=${1:?usage: offline_bundle.sh DIR PYTHON [--peers]}
PY=${2:?usage: offline_bundle.sh DIR PYTHON [--peers]}
PEERS=${3:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$DIR/bin" "$DIR/lib" "$DIR/whl"
DIR=$(cd "$DIR" && pwd)

for tool in hey wrk nginx; do
    path=$(command -v $tool || echo /usr/sbin/$tool)
    [ -x "$path" ] || { echo "offline_bundle: $tool not installed (apt-get install hey wrk nginx-light)" >&2; exit 2; }
    cp "$path" "$DIR/bin/"
    # Every shared library but the C library and the loader themselves.
    libs=$(ldd "$path" | awk '/=> \// {print $3}' \
        | grep -v -E '/(libc|libm|libpthread|libdl|ld-linux)[.-]' || true)
    for lib in $libs; do cp -L "$lib" "$DIR/lib/"; done
done

rm -f "$DIR"/whl/fastwsgi-*.whl
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DIR/whl" "$REPO"
VER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$VER" \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR/whl" gunicorn flask werkzeug blinker itsdangerous jinja2 click markupsafe
if [ "$PEERS" = --peers ]; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$VER" \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 -d "$DIR/whl" granian pyuwsgi
    # bjoern ships no wheels: build one, and take the libev it links.
    "$PY" -m pip wheel -q --no-deps --no-binary bjoern -w "$DIR/whl" bjoern
    so=$(ls /usr/lib/x86_64-linux-gnu/libev.so.4 2>/dev/null) \
        || { echo "offline_bundle: libev missing (apt-get install libev-dev)" >&2; exit 2; }
    cp -L "$so" "$DIR/lib/"
fi

cat > "$DIR/run.sh" <<'EOF'
#!/bin/bash
# Runs on the target, from the checkout's root: bash BUNDLE/run.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR}
mkdir -p "$OUT/results"
export PATH=$B/bin:$PATH LD_LIBRARY_PATH=$B/lib PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/fastwsgi-site "$B"/whl/*.whl || exit 3
export PYTHONPATH=/tmp/fastwsgi-site PATH=/tmp/fastwsgi-site/bin:$PATH
NOPIN=; command -v taskset >/dev/null || NOPIN=--no-pin
peers() {
    # Issue 8's method: one worker on CPU 0, nginx and the load on CPU 1.
    python3 bench/run.py --servers fastwsgi-sync,fastwsgi-gthread,gunicorn-sync,gunicorn-gthread,bjoern,uwsgi,granian,nginx-static \
        --scenarios hello,file1m --paths nginx,direct --rounds 3 --duration "${DURATION:-1.5}" \
        --warmup 0.5 --pin --no-chart --out "$OUT/results/peers.json"
}
scaling() {
    python3 bench/scaling.py --workers-list "${WORKERS:-1,2,4,8}" --scenarios hello \
        --paths nginx,direct --rounds 3 --duration 1.5 --warmup 0.5 --deadline 300 \
        --out "$OUT/results/hello" $NOPIN
    python3 bench/scaling.py --workers-list "${WORKERS:-1,2,4,8}" --scenarios flask \
        --paths direct --rounds 3 --duration 1.5 --warmup 0.5 --deadline 170 \
        --out "$OUT/results/flask" $NOPIN
    [ -z "$NOPIN" ] && python3 bench/run.py --servers fastwsgi-sync,fastwsgi-gthread,gunicorn-sync,gunicorn-gthread \
        --scenarios hello,file1m --paths nginx,direct --rounds 3 --duration 2 --warmup 0.5 \
        --pin --no-chart --out "$OUT/results/pin1.json"
}
{
    echo "cpus $(nproc), kernel $(uname -r), $(python3 -V)"
    if [ "${RUN:-}" = peers ]; then peers; else scaling; fi
} 2>&1 | grep -v '^\[' | tee "$OUT/results/log.txt"
# One archive: such machines may hand back only a few files.
tar -C "$OUT" -czf "$OUT/results.tar.gz" results && rm -rf "$OUT/results"
EOF
chmod +x "$DIR/run.sh"
du -sh "$DIR"
