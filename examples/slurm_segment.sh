#!/bin/bash
# Brain tissue (CSF/GM/WM) of every image in a list, a SLURM job array, CHUNK images per task:
# the model is loaded once per task, then reused for each image of its chunk.
#
#   medcli models pull tissue          # on the login node (compute nodes often have no internet)
#   mkdir -p logs
#   N=$(grep -cv '^#' inputs.txt); sbatch --array=0-$(( (N + 19) / 20 - 1 )) examples/slurm_segment.sh
#   sbatch --gres=gpu:1 --array=...  examples/slurm_segment.sh    # on GPU nodes
#
# --device auto (the default) uses the GPU that SLURM hands the task (CUDA_VISIBLE_DEVICES) and
# falls back to the CPU when torch sees none; with -v the log says which ('device: cuda ...').
# A site cache of models (MEDCLI_MODELS_PATH, read-only) is searched before anything else.
#
#SBATCH --job-name=medcli-tissue
#SBATCH --array=0-9
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x_%A_%a.log

set -euo pipefail

LIST=${LIST:-inputs.txt}   # one input per line (optionally: a tab and its output)
OUT=${OUT:-tissue}         # output folder
CHUNK=${CHUNK:-20}         # inputs per array task: keep in step with --array

export MEDCLI_OFFLINE=${MEDCLI_OFFLINE:-1}

mkdir -p "$OUT"
medcli segment --task tissue --list "$LIST" --chunk "$CHUNK" \
    -o "$OUT/{stem}_dseg.nii.gz" --stats "$OUT/{stem}_volumes.json" --skip-existing --sidecar -v
