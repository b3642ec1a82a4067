#!/usr/bin/env bash
# Create the peer environments the benchmark suite compares Outpost against.
#
# Each peer gets its own virtual environment under benchmarks/.venvs/ (gitignored), so Parsl,
# Dask and Ray never enter Outpost's runtime dependencies and their pins cannot clash:
#   benchmarks/.venvs/parsl  benchmarks/.venvs/dask  benchmarks/.venvs/ray
# Usage: benchmarks/setup_peers.sh [parsl] [dask] [ray]   (default: all three)
# Re-running is cheap: an environment that already imports its peer is left alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(parsl dask ray)

declare -A packages=(
  [parsl]="parsl"
  [dask]="dask[distributed]"
  [ray]="ray"
)
declare -A modules=([parsl]=parsl [dask]=distributed [ray]=ray)

for peer in "${peers[@]}"; do
  if [ -z "${packages[$peer]:-}" ]; then
    echo "unknown peer '$peer': choose from parsl, dask, ray" >&2
    exit 2
  fi
  venv="$here/.venvs/$peer"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import ${modules[$peer]}" 2>/dev/null; then
    echo "$peer: ready in $venv"
    continue
  fi
  echo "$peer: creating $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  # cloudpickle/psutil are what the peer runners use besides the peer itself.
  "$venv/bin/pip" install --quiet ${packages[$peer]} psutil
  "$venv/bin/python" -c "import ${modules[$peer]} as m; print('$peer', m.__version__)"
done
