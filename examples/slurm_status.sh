#!/bin/bash
# Job state for Snakemake's cluster-generic executor on SLURM, with or without accounting:
#   snakemake --executor cluster-generic --jobs 100 \
#       --cluster-generic-submit-cmd "sbatch --parsable -c {threads} --mem 4G -o logs/%j.log" \
#       --cluster-generic-status-cmd examples/slurm_status.sh
# Prints success, running or failed for the job id Snakemake passes ("ID" or "ID;CLUSTER").
# 'scontrol show job' knows a job until MinJobAge seconds after its end (default 300); sacct,
# where the site has accounting, knows it for longer.
id=${1%%;*}
state=$(scontrol show job "$id" -o 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2)
if [ -z "$state" ] && command -v sacct >/dev/null; then
    state=$(sacct -X -n -P -j "$id" -o State 2>/dev/null | head -n 1 | cut -d' ' -f1)
fi
case $state in
    COMPLETED) echo success ;;
    PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_HOLD | RESIZING | STAGE_OUT) echo running ;;
    "") echo "slurm_status: job $id is unknown to scontrol and sacct (raise MinJobAge?)" >&2; echo failed ;;
    *) echo failed ;;
esac
