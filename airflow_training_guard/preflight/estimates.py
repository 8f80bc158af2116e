"""Memory and cost estimates: does the model fit the GPUs, and what will the run cost.

Bytes per parameter for each training mode (weights + gradients + optimizer state), before
activations:

- ``full`` (fp32 weights, fp32 AdamW): 4 weights + 4 gradients + 8 Adam moments = **16 bytes**.
  Source: Rajbhandari et al., *ZeRO* (2020), section 3.1; Hugging Face Transformers docs,
  "Model training anatomy" (AdamW: 8 bytes/param of optimizer state).
- ``mixed`` (fp16/bf16 mixed precision, AdamW with fp32 master weights): 6 weights (fp32 master +
  half copy) + 4 gradients + 8 Adam = **18 bytes**. Source: Transformers "Model training anatomy"
  ("mixed precision training: 6 + 4 + 8 = 18 bytes per parameter").
- ``lora`` (frozen bf16 base, small adapters): **2 bytes** for the frozen weights; the adapters'
  weights, gradients and optimizer state are a small fraction (see margin). Source: Hu et al.,
  *LoRA* (2021).
- ``qlora`` (frozen 4-bit NF4 base): 0.5 bytes + quantization constants (~0.127 bits/param with
  double quantization) ≈ **0.6 bytes**. Source: Dettmers et al., *QLoRA* (2023), section 3.

Activations depend on batch size and sequence length; the estimate adds a margin
(:data:`ACTIVATION_MARGIN`: +20% for ``full``/``mixed``, +30% for adapter modes, which spend a larger
share on activations and adapter state) plus :data:`PER_GPU_OVERHEAD_GIB` per GPU for the CUDA
context. It is a floor for "will this ever fit", not a capacity plan: a run it rejects cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_training_guard.exceptions import GuardConfigError

GIB = 1024**3

BYTES_PER_PARAMETER: dict[str, float] = {"full": 16.0, "mixed": 18.0, "lora": 2.0, "qlora": 0.6}
ACTIVATION_MARGIN: dict[str, float] = {"full": 0.20, "mixed": 0.20, "lora": 0.30, "qlora": 0.30}
PER_GPU_OVERHEAD_GIB = 1.0

#: Memory per GPU model, GiB (vendor data sheets). Keys are compared case-insensitively.
GPU_MEMORY_GIB: dict[str, float] = {
    "t4": 16,
    "v100": 16,
    "v100-32gb": 32,
    "a10g": 24,
    "l4": 24,
    "rtx4090": 24,
    "a100": 80,
    "a100-40gb": 40,
    "a100-80gb": 80,
    "l40s": 48,
    "h100": 80,
    "h100-80gb": 80,
    "h200": 141,
    "b200": 180,
}


def validate_mode(mode: object) -> str:
    """``mode`` lower-cased, or :class:`GuardConfigError` listing the modes."""
    if not isinstance(mode, str) or mode.strip().lower() not in BYTES_PER_PARAMETER:
        raise GuardConfigError(
            f"training mode {mode!r} is not known; use one of {', '.join(BYTES_PER_PARAMETER)}"
        )
    return mode.strip().lower()


def gpu_memory_gib(gpu_type: str | None = None, explicit_gib: float | None = None) -> float:
    """Memory of one GPU: ``explicit_gib`` when given, else from :data:`GPU_MEMORY_GIB`.

    :raises GuardConfigError: for an unknown type without ``explicit_gib``, listing the known types.
    """
    if explicit_gib is not None:
        if isinstance(explicit_gib, bool) or not isinstance(explicit_gib, int | float) or explicit_gib <= 0:
            raise GuardConfigError(f"gpu_memory_gib {explicit_gib!r} must be a positive number of GiB")
        return float(explicit_gib)
    if gpu_type is None:
        raise GuardConfigError("give gpu_type (e.g. 'a100-80gb') or gpu_memory_gib to check the model fits")
    key = gpu_type.strip().lower().replace("nvidia-", "").replace(" ", "-")
    if key not in GPU_MEMORY_GIB:
        raise GuardConfigError(
            f"gpu_type {gpu_type!r} is not in the table ({', '.join(sorted(GPU_MEMORY_GIB))}); "
            "pass gpu_memory_gib explicitly"
        )
    return GPU_MEMORY_GIB[key]


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory a training run needs vs what the GPUs have.

    :param parameters: model parameters.
    :param mode: training mode.
    :param needed_gib: estimated memory needed, all GPUs together.
    :param available_gib: memory of the requested GPUs together.
    """

    parameters: int
    mode: str
    needed_gib: float
    available_gib: float

    @property
    def fits(self) -> bool:
        """Whether the estimate fits in the GPUs' memory."""
        return self.needed_gib <= self.available_gib

    def describe(self) -> str:
        """``7.6B parameters, mode 'mixed': needs ~152.3 GiB, 1 GPU(s) have 80.0 GiB``."""
        return (
            f"{format_parameters(self.parameters)} parameters, mode {self.mode!r}: needs "
            f"~{self.needed_gib:.1f} GiB, the GPUs have {self.available_gib:.1f} GiB"
        )


def format_parameters(count: int) -> str:
    """``494M``, ``8.0B``."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.0f}M"
    return str(count)


def estimate_memory(parameters: int, mode: str, *, gpus: int, gpu_memory: float) -> MemoryEstimate:
    """Estimate the memory of training ``parameters`` in ``mode`` on ``gpus`` GPUs of ``gpu_memory`` GiB.

    Assumes the state is sharded across GPUs (FSDP/ZeRO-3); without sharding each GPU needs it all,
    so a check that passes here may still fail on a data-parallel run: the estimate is a floor.
    """
    mode = validate_mode(mode)
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters <= 0:
        raise GuardConfigError(f"parameters {parameters!r} must be a positive integer")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise GuardConfigError(f"gpus {gpus!r} must be an integer >= 1")
    state = parameters * BYTES_PER_PARAMETER[mode] * (1 + ACTIVATION_MARGIN[mode]) / GIB
    needed = state + PER_GPU_OVERHEAD_GIB * gpus
    return MemoryEstimate(
        parameters=parameters, mode=mode, needed_gib=needed, available_gib=gpus * gpu_memory
    )


def estimate_cost(*, gpus: int, hours: float, price_per_gpu_hour: float) -> float:
    """GPU-hours x price: what a run of ``hours`` (use the deadline: the worst case) costs."""
    if price_per_gpu_hour < 0 or hours < 0 or gpus < 0:
        raise GuardConfigError("gpus, hours and price_per_gpu_hour must not be negative")
    return gpus * hours * price_per_gpu_hour
