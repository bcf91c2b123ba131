#!/usr/bin/env bash
# Scheduled retraining, the steps of .github/workflows/retrain.yml; runs the same way locally.
#
#   scripts/retrain.sh [PRESET]      PRESET: a name under pipelines/ (default: paper-widerface,
#                                    or $FEATHERFACE_PRESET)
#
# 1. dvc pull       the cache of the last run (missing files are not an error on a first run)
# 2. featherface exp run --preset PRESET   the DAG; stages whose inputs did not change are skipped
# 3. dvc push       outputs and run cache to the default DVC remote
# 4. dvc metrics diff --md   against the last commit, appended to $GITHUB_STEP_SUMMARY (stdout
#                   when unset)
# 5. featherface promote   featherface-nano-b and featherface-v1: alias champion when hard AP and
#                   parameter budget allow (a refusal is reported, not an error)
#
# Needs the featherface package installed (the `featherface` and `dvc` commands on PATH), a git
# checkout and a default DVC remote (`dvc remote add -d NAME URL`). All stage runs of one call
# share the MLflow tag featherface.pipeline=$FEATHERFACE_PIPELINE_RUN.
set -euo pipefail

preset="${1:-${FEATHERFACE_PRESET:-paper-widerface}}"
summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
export FEATHERFACE_PIPELINE_RUN="${FEATHERFACE_PIPELINE_RUN:-retrain-$(date -u +%Y%m%d-%H%M%S)}"

step() { printf '\n== %s\n' "$*" >&2; }

step "dvc pull"
dvc pull --allow-missing

step "featherface exp run --preset $preset (pipeline $FEATHERFACE_PIPELINE_RUN)"
featherface exp run --preset "$preset"

step "dvc push"
dvc push --run-cache

step "dvc metrics diff"
{
    printf '## Retraining: preset %s, pipeline %s\n\n' "$preset" "$FEATHERFACE_PIPELINE_RUN"
    dvc metrics diff --md --all
    printf '\n'
} >> "$summary"

step "featherface promote"
for name in featherface-nano-b featherface-v1; do
    featherface promote --name "$name" --metrics stages/evaluate/metrics.json
done
