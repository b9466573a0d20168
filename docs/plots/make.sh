#!/bin/sh
# Makes docs/plots/*.png from real sessions on the built-in simulated station (and one on a
# bench served by `labctl sim serve`, which the client takes for hardware: no oracle).
# Run from the repository root: sh docs/plots/make.sh   (a few minutes)
set -eu
labctl=${LABCTL:-.venv/bin/labctl}
work=$(mktemp -d)
out=docs/plots
s=$work/sessions
$labctl iv --pair 3 --sessions-dir "$s" >/dev/null 2>&1
$labctl fd-scan --pair 3 --sessions-dir "$s" >/dev/null 2>&1
$labctl tune --pair 2 --i-off 60e-6 --sessions-dir "$s" >/dev/null 2>&1 || true
$labctl train iris --folds 3 --epochs 20 --hidden 4 --layers 2 --sessions-dir "$s" \
    --no-progress >/dev/null
$labctl train iris --backend model --grad fd-swap,exact,shuffled --folds 3 --epochs 40 \
    --sessions-dir "$work/compare" --no-progress >/dev/null
for d in "$s"/*; do $labctl report "$d" --out "$work/report" >/dev/null; done
cp "$work"/report/iv.png "$work"/report/fd_scan.png "$work"/report/tune.png \
   "$work"/report/training.png "$work"/report/derivative.png "$work"/report/fidelity.png "$out"/
cp "$(ls -d "$work"/compare/* | head -1)"/training-comparison.png "$out"/
# A bench of "real" instruments: the derivative plot without an oracle.
.venv/bin/python - "$work" <<'PY'
import sys
from pathlib import Path
from labctl.station.file import BUILTIN_TEXT
Path(sys.argv[1], "bench.toml").write_text(BUILTIN_TEXT)
PY
$labctl sim serve --station "$work/bench.toml" --write-station "$work/client.toml" \
    >"$work/serve.log" 2>&1 &
server=$!
while ! grep -q '^ready' "$work/serve.log"; do sleep 0.2; done
$labctl train iris --station "$work/client.toml" --folds 2 --epochs 3 --hidden 4 \
    --layers 2 --sessions-dir "$work/hw" --no-progress >/dev/null
kill "$server"; wait "$server" || true
cp "$(ls -d "$work"/hw/* | head -1)"/derivative.png "$out"/derivative-no-oracle.png
$labctl sweep train iris --backend model --seed 0:4 --grad fd-swap,shuffled --epochs 20 \
    --folds 3 --out "$work/iris-grad-sweep" --yes --no-progress >/dev/null
$labctl sweep report "$work/iris-grad-sweep" >/dev/null
cp "$work"/iris-grad-sweep/report/accuracy-vs-grad.png "$out"/sweep-accuracy-vs-grad.png
echo "made $(ls "$out"/*.png | wc -l) plots in $out (sessions in $work)"
