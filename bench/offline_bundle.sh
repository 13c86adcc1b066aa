#!/bin/bash
# Pack what the benchmark suite needs for a machine with no network access:
# hey, wrk and nginx with the shared libraries they load, a fastwsgi wheel
# built for the target's Python, and the Gunicorn and Flask wheels.
#
# Why: lent benchmark machines (the 16-CPU scaling runs in bench/README.md)
# can reach nothing, have no load generator or nginx, and may run another
# Python than this one. The binaries come from this machine's Debian
# packages; the target needs glibc at least as new as this one's.
#
# usage: bench/offline_bundle.sh DIR PYTHON
#   DIR     where to build the bundle (e.g. .devbundle, git-ignored by you)
#   PYTHON  an interpreter of the target's version (e.g. python3.12), used
#           to build the fastwsgi wheel and pick the wheels' tags
# Then on the target, from the checkout's root:
#   bash DIR/run.sh OUTDIR     (runs bench/scaling.py and a pinned run.py,
#                               writes OUTDIR/results.tar.gz)
set -euo pipefail
DIR=${1:?usage: offline_bundle.sh DIR PYTHON}
PY=${2:?usage: offline_bundle.sh DIR PYTHON}
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

cat > "$DIR/run.sh" <<'EOF'
#!/bin/bash
# Runs on the target, from the checkout's root: bash BUNDLE/run.sh OUTDIR
B=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR}
mkdir -p "$OUT/results"
export PATH=$B/bin:$PATH LD_LIBRARY_PATH=$B/lib PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/fastwsgi-site "$B"/whl/*.whl || exit 3
export PYTHONPATH=/tmp/fastwsgi-site
NOPIN=; command -v taskset >/dev/null || NOPIN=--no-pin
{
    echo "cpus $(nproc), kernel $(uname -r), $(python3 -V)"
    python3 bench/scaling.py --workers-list "${WORKERS:-1,2,4,8}" --scenarios hello \
        --paths nginx,direct --rounds 3 --duration 1.5 --warmup 0.5 --deadline 300 \
        --out "$OUT/results/hello" $NOPIN
    python3 bench/scaling.py --workers-list "${WORKERS:-1,2,4,8}" --scenarios flask \
        --paths direct --rounds 3 --duration 1.5 --warmup 0.5 --deadline 170 \
        --out "$OUT/results/flask" $NOPIN
    [ -z "$NOPIN" ] && python3 bench/run.py --servers fastwsgi-sync,fastwsgi-gthread,gunicorn-sync,gunicorn-gthread \
        --scenarios hello,file1m --paths nginx,direct --rounds 3 --duration 2 --warmup 0.5 \
        --pin --no-chart --out "$OUT/results/pin1.json"
} 2>&1 | grep -v '^\[' | tee "$OUT/results/log.txt"
# One archive: such machines may hand back only a few files.
tar -C "$OUT" -czf "$OUT/results.tar.gz" results && rm -rf "$OUT/results"
EOF
chmod +x "$DIR/run.sh"
du -sh "$DIR"
