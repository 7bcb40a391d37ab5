#!/usr/bin/env bash
# Run every benchmark in bench/ that exists, one after the other (they would disturb each
# other's timings side by side), each writing bench/results/<name>.txt; record the machine in
# bench/results/machine.txt. BENCHMARKS.md is assembled from those files.
#
#   bash bench/run_all.sh                 # everything, default sizes (about an hour on 2 cores)
#   bash bench/run_all.sh storage ingest  # only these
#
# Exit status: 0 when every benchmark that ran succeeded, 1 otherwise (each one still runs).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f /work/venv/bin/activate ]; then
  # shellcheck disable=SC1091
  . /work/venv/bin/activate
fi

# Known ones first, in this order; then any other bench/*.py, so a new benchmark is never left out.
ORDER=(sdk_overhead ingest soak normalise detection dashboard gate storage round_trip)
for script in bench/*.py; do
  name=$(basename "$script" .py)
  case " ${ORDER[*]} " in *" $name "*) ;; *) ORDER+=("$name") ;; esac
done
if [ "$#" -gt 0 ]; then ORDER=("$@"); fi

mkdir -p bench/results
{
  echo "# machine, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo "cores: $(nproc)"
  free -g | sed -n '1,2p'
  echo "kernel: $(uname -srm)"
  python - <<'PY'
import importlib.metadata as md
import platform
print("python:", platform.python_version())
for dist in ("chdb", "clickhouse-connect", "opentelemetry-sdk", "pyarrow", "streamlit", "arize-phoenix"):
    try:
        print(f"{dist}: {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist}: not installed")
PY
  python -c "import chdb; print('clickhouse engine:', chdb.query('SELECT version()', 'CSV').bytes().decode().strip())"
} > bench/results/machine.txt
cat bench/results/machine.txt

failed=()
for name in "${ORDER[@]}"; do
  script="bench/${name}.py"
  if [ ! -f "$script" ]; then
    echo "== $name: no $script, skipped"
    continue
  fi
  # Benchmarks whose standard run takes arguments: the ingest scaling curve is a second run.
  runs=("")
  case "$name" in ingest) runs=("" "--curve 100000 300000 1000000") ;; esac
  for args in "${runs[@]}"; do
    echo "== $name: python $script $args"
    start=$(date +%s)
    # shellcheck disable=SC2086  # $args is a list of words
    if python "$script" $args; then
      echo "== $name: done in $(( $(date +%s) - start )) s"
    else
      echo "== $name: FAILED (exit $?) after $(( $(date +%s) - start )) s"
      failed+=("$name $args")
    fi
  done
done

# BENCHMARKS.md ends with verbatim copies of the results files: rebuild that part from them.
python - <<'PY'
from pathlib import Path
page = Path("BENCHMARKS.md")
head, marker, _ = page.read_text().partition("## Results files")
parts = [head + marker, "", "Verbatim copies of `bench/results/*.txt` as they were when this page was assembled.", ""]
for result in sorted(Path("bench/results").glob("*.txt")):
    parts += [f"### {result}", "", "```", result.read_text().rstrip(), "```", ""]
page.write_text("\n".join(parts))
PY

if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all benchmarks done; results in bench/results/"
