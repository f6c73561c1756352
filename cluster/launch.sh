#!/bin/bash
# The whole GPU pipeline on a SLURM cluster, as dependent jobs:
#   1. prepare   one CPU job loads the candidates once (ir_datasets downloads, docs store)
#   2. teacher   an array of SHARDS tasks, RankZephyr with vLLM (TP GPUs each)
#   3. merge     one run from the shards, written atomically
#   4. train     the student's two stages on NUM_GPUS GPUs with accelerate
# Usage: CANDIDATES=colbertv2.run [SHARDS=4 TP=1 NUM_GPUS=4 PROFILE=gpu] cluster/launch.sh
# Set DRY_RUN=1 to print the sbatch commands instead of submitting them.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS=${SHARDS:-4}
TP=${TP:-1}
NUM_GPUS=${NUM_GPUS:-4}
PROFILE=${PROFILE:-gpu}
export OUT_DIR=${OUT_DIR:-teacher-shards}
export DATASET=${DATASET:-msmarco-passage/train/judged}
export CANDIDATES=${CANDIDATES:?set CANDIDATES to the first-stage run file}
export MODEL=${MODEL:-castorini/rank_zephyr_7b_v1_full}
export TP PROFILE NUM_GPUS
export TEACHER_RUN=${TEACHER_RUN:-$OUT_DIR/rankzephyr.run}   # train.slurm distils this run (stage 2)
[ -n "${DRY_RUN:-}" ] || mkdir -p logs "$OUT_DIR"   # logs/: the jobs' --output folder

submit() {
    if [ -n "${DRY_RUN:-}" ]; then echo "sbatch $*" >&2; echo "0"; else sbatch --parsable "$@"; fi
}

prep=$(submit --job-name=rd-prepare --time=02:00:00 --mem=32G --output=logs/%x-%j.out \
    --wrap "python -m rank_distillm.teacher.shards run --shard 0 --num-shards $SHARDS --dataset $DATASET --candidates $CANDIDATES --out-dir $OUT_DIR --prepare-only")
teach=$(submit --dependency=afterok:$prep --array=0-$((SHARDS - 1)) --gres=gpu:$TP --export=ALL cluster/teacher.slurm)
merge=$(submit --dependency=afterok:$teach --job-name=rd-merge --time=00:30:00 --output=logs/%x-%j.out \
    --wrap "python -m rank_distillm.teacher.shards merge --out-dir $OUT_DIR --num-shards $SHARDS --out $TEACHER_RUN --log-out $OUT_DIR/rankzephyr.windows.jsonl")
train=$(submit --dependency=afterok:$merge --gres=gpu:$NUM_GPUS --export=ALL cluster/train.slurm)
echo "submitted: prepare $prep, teacher array $teach ($SHARDS shards), merge $merge, train $train"
