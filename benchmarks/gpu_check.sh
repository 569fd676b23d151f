#!/usr/bin/env bash
# The qwen3-1.7b path on a CUDA GPU, from a fresh clone, in under 8 minutes (install included).
# Not yet run on a GPU: written and checked (bash -n, shellcheck) on a machine without one, and
# run end to end there with --dry-run (tests/test_benchmarks.py).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: benchmarks/gpu_check.sh [options]

Installs the pinned stack with the CUDA build of torch 2.13.0, writes a random model of the
exact Qwen3-1.7B architecture (or uses --model), trains N optimizer steps of v2 as the seed
ran it (QLoRA NF4 + double quantization, LoRA r=64 on the seven projections,
modules_to_save embed_tokens/lm_head, bf16, gradient checkpointing, paged_adamw_8bit,
batch 4 x accumulation 4) and prints non-padding tokens/s and peak CUDA memory beside the
memory model's prediction (benchmarks/memory_estimate.py).

--dry-run runs the same steps on CPU, no GPU needed: it prints the install commands instead of
running them (nothing with --no-install), writes a tiny random Qwen3 (the tiny profile's
architecture, with the qwen3-1.7b profile's settings: 4-bit NF4, LoRA, modules_to_save) and
trains it for 1 step at max length 128 (unless --steps / --max-length say otherwise: 128 keeps
every prompt of the reference and sample records whole) through the same
benchmarks/gpu_check.py, which then prints tokens/s and the peak resident set size (RSS) in
place of CUDA memory. Liger's Triton kernels and flash attention need CUDA: the dry
run says so and leaves them out (--liger: the chunked loss instead; --attn: sdpa).

options:
  --model DIR       a Qwen3-1.7B directory (e.g. a snapshot of Qwen/Qwen3-1.7B); default:
                    a random one written by benchmarks/make_random_model.py under --work
  --steps N         optimizer steps (default 10; --dry-run: 1)
  --variant NAME    default v2
  --max-length N    default 2048 (--dry-run: 128)
  --data FILE       QA records (JSONL); default: ../shared/reference records, else the sample
  --liger           TrainingArguments.use_liger_kernel (installs the `liger` extra): fused
                    Triton kernels, the output layer + cross-entropy without the logits
  --loss-chunk-size N|null
                    model.loss_chunk_size (the profile's 256 by default): the output layer
                    + loss fused in plain torch, N positions at a time (medsft.modeling.loss);
                    null: transformers' loss over the full logits (pair with --liger)
  --packing         model.packing=true: padding-free batches (medsft.train.packing). Use it
                    with --attn flash_attention_2 (installs flash-attn, a long build where no
                    wheel fits): flash attention's varlen kernel reads the example boundaries
                    from position_ids, whereas sdpa gets a materialised block-diagonal mask
                    of the packed row (memory quadratic in the row's length)
  --attn IMPL       attn_implementation of the base (default sdpa; flash_attention_2, or a
                    hub kernel such as kernels-community/flash-attn2 with the `kernels` package)
  --cuda TAG        PyTorch wheel index tag (cu126, cu128, cu130); default: from the driver
  --venv DIR        virtual environment to create or reuse (default .venv-gpu)
  --no-install      use the active Python as it is
  --work DIR        where the random model and the run go (default gpu-check/)
  --dry-run         on CPU with a tiny random model, installing nothing (see above)
  -h, --help        this text
EOF
}

die() {
    echo "error: $*" >&2
    exit 1
}

STEPS=""
VARIANT=v2
MAX_LENGTH=""
MODEL=""
DATA=""
LIGER=0
PACKING=0
LOSS_CHUNK=""
ATTN=sdpa
CUDA_TAG=""
VENV=.venv-gpu
INSTALL=1
WORK=gpu-check  # ignored by git
TORCH_VERSION=2.13.0
DRY_RUN=0

while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=${2:?--model needs a directory}; shift 2 ;;
        --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
        --variant) VARIANT=${2:?--variant needs a name}; shift 2 ;;
        --max-length) MAX_LENGTH=${2:?--max-length needs a number}; shift 2 ;;
        --data) DATA=${2:?--data needs a file}; shift 2 ;;
        --liger) LIGER=1; shift ;;
        --packing) PACKING=1; shift ;;
        --loss-chunk-size) LOSS_CHUNK=${2:?--loss-chunk-size needs a number}; shift 2 ;;
        --attn) ATTN=${2:?--attn needs an implementation}; shift 2 ;;
        --cuda) CUDA_TAG=${2:?--cuda needs a tag such as cu128}; shift 2 ;;
        --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --work) WORK=${2:?--work needs a directory}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
if [ "$DRY_RUN" = 1 ]; then
    STEPS=${STEPS:-1}
    MAX_LENGTH=${MAX_LENGTH:-128}
else
    STEPS=${STEPS:-10}
    MAX_LENGTH=${MAX_LENGTH:-2048}
fi
case "$STEPS" in '' | *[!0-9]*) die "--steps: not a number: $STEPS" ;; esac
case "$MAX_LENGTH" in '' | *[!0-9]*) die "--max-length: not a number: $MAX_LENGTH" ;; esac
case "$LOSS_CHUNK" in null) ;; *[!0-9]*) die "--loss-chunk-size: not a number or null: $LOSS_CHUNK" ;; esac
[ -z "$MODEL" ] || [ -f "$MODEL/config.json" ] || die "--model $MODEL: no config.json there"
[ -z "$DATA" ] || [ -f "$DATA" ] || die "--data $DATA: no such file"

cd "$(dirname "$0")/.."
SECONDS=0
phase() { printf '\n== %s (%d s so far)\n' "$*" "$SECONDS"; }

if [ "$DRY_RUN" = 1 ]; then
    phase "dry run: on CPU, installing nothing"
    export CUDA_VISIBLE_DEVICES=""  # a GPU that is here stays unused
    if [ "$LIGER" = 1 ]; then
        echo "--liger: skipped on CPU (Liger's Triton kernels need a CUDA GPU);" \
            "$VARIANT runs with model.loss_chunk_size ${LOSS_CHUNK:-as the profile sets it (the chunked loss)}"
        LIGER=0
    fi
    if [ "$ATTN" != sdpa ]; then
        echo "--attn $ATTN: skipped on CPU (it needs a CUDA GPU); sdpa instead"
        ATTN=sdpa
    fi
    if [ -z "$CUDA_TAG" ] && ! command -v nvidia-smi >/dev/null; then
        CUDA_TAG=cu128
        echo "no nvidia-smi: the install below assumes --cuda $CUDA_TAG"
    fi
else
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this check needs a CUDA GPU (--dry-run: the same on CPU; docs/qwen3-1.7b.md for the CPU path)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

if [ -z "$CUDA_TAG" ]; then
    # The highest CUDA runtime the driver supports ("CUDA Version: 12.8" in nvidia-smi's header).
    DRIVER_CUDA=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1\2/p' | head -n 1)
    [ -n "$DRIVER_CUDA" ] || die "could not read the driver's CUDA version from nvidia-smi; pass --cuda cu128"
    if [ "$DRIVER_CUDA" -ge 130 ]; then
        CUDA_TAG=cu130
    elif [ "$DRIVER_CUDA" -ge 128 ]; then
        CUDA_TAG=cu128
    else
        CUDA_TAG=cu126
    fi
fi

# Runs a command, or with --dry-run prints it.
step() {
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

if [ "$INSTALL" = 1 ]; then
    phase "install: torch $TORCH_VERSION ($CUDA_TAG) and requirements.txt into $VENV"
    [ -d "$VENV" ] || step python3 -m venv "$VENV"
    if [ "$DRY_RUN" = 0 ]; then
        # shellcheck disable=SC1091  # created just above
        . "$VENV/bin/activate"
    fi
    step python -m pip install -q --upgrade pip
    # The CUDA build first: requirements.txt's torch==2.13.0 is then already satisfied by it.
    step python -m pip install -q "torch==$TORCH_VERSION" --index-url "https://download.pytorch.org/whl/$CUDA_TAG"
    step python -m pip install -q -r requirements.txt
    step python -m pip install -q --no-deps -e .
    if [ "$LIGER" = 1 ]; then
        step python -m pip install -q -e '.[liger]'
    fi
    if [ "$ATTN" = flash_attention_2 ]; then
        step python -m pip install -q flash-attn --no-build-isolation
    fi
fi
if [ "$DRY_RUN" = 1 ]; then
    python -c 'import torch; print(f"torch {torch.__version__}, CPU (dry run), {torch.get_num_threads()} threads")'
else
    python - <<'EOF'
import torch

assert torch.cuda.is_available(), "torch sees no CUDA device (a CPU build of torch, or a driver too old for it)"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
EOF
fi

if [ -z "$MODEL" ]; then
    # The dry run: the tiny profile's Qwen3 architecture (hidden 64, 2 layers, Qwen3's vocabulary).
    if [ "$DRY_RUN" = 1 ]; then PROFILE=tiny; else PROFILE=qwen3-1.7b; fi
    MODEL="$WORK/$PROFILE-random"
    if [ -f "$MODEL/medsft_random_model.json" ]; then
        phase "reusing the random $PROFILE model in $MODEL"
    else
        phase "writing a random $PROFILE model to $MODEL"
        python benchmarks/make_random_model.py --profile "$PROFILE" "$MODEL"
    fi
fi

phase "training $VARIANT for $STEPS steps"
ARGS=(--model "$MODEL" --variant "$VARIANT" --steps "$STEPS" --max-length "$MAX_LENGTH" --attn "$ATTN" --out "$WORK/run")
[ -z "$DATA" ] || ARGS+=(--data "$DATA")
[ "$LIGER" = 0 ] || ARGS+=(--liger)
[ "$PACKING" = 0 ] || ARGS+=(--packing)
[ -z "$LOSS_CHUNK" ] || ARGS+=(--loss-chunk-size "$LOSS_CHUNK")
python benchmarks/gpu_check.py "${ARGS[@]}"
phase "done"
