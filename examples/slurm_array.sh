#!/bin/bash
# Process every image listed in a text file with a SLURM job array, CHUNK images per task.
#
#   ls /data/raw/*.nii.gz > inputs.txt        # or: input<TAB>output per line
#   mkdir -p logs
#   N=$(grep -cv '^#' inputs.txt); sbatch --array=0-$(( (N + 9) / 10 - 1 )) examples/slurm_array.sh
#
# The array index is 0-based (--array=0-M): medcli takes SLURM_ARRAY_TASK_ID as given and
# processes inputs [index*CHUNK, (index+1)*CHUNK) of the list. It warns when the array starts
# at 1 or ends too early. A task whose inputs partly fail exits 5 (the others are written):
# resubmit the same array and --skip-existing does only what is missing.
#
#SBATCH --job-name=medcli
#SBATCH --array=0-9
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output=logs/%x_%A_%a.log

set -euo pipefail

LIST=${LIST:-inputs.txt}   # one input per line (optionally: a tab and its output)
OUT=${OUT:-out}            # output folder
CHUNK=${CHUNK:-10}         # inputs per array task: keep in step with --array

# Compute nodes often have no internet: fetch models on the login node first
# ('medcli models pull NAME'); offline, medcli then says what is missing instead of hanging.
export MEDCLI_OFFLINE=${MEDCLI_OFFLINE:-1}

mkdir -p "$OUT"
# --threads defaults to SLURM_CPUS_PER_TASK; models load once per task, not once per image.
# -v logs each input this task handled ('IN -> OUT (s)'): the log says what to resubmit.
medcli convert --list "$LIST" --chunk "$CHUNK" \
    -o "$OUT/{stem}.nii.gz" --reorient RAS --skip-existing --sidecar -v
