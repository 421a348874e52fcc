"""What counts as a GPU fault, and the switch to draining (once, every veena_drain hook run)."""

import asyncio

import pytest

from veena.platform.config import parse_config
from veena.platform.faults import EngineDead, begin_draining, gpu_fault
from veena.platform.hookspecs import hookimpl
from veena.platform.plugins import build_runtime
from veena.platform.runtime import Phase

torch = pytest.importorskip("torch")


class EngineDeadError(RuntimeError):
    """Named like vLLM's (vllm.v1.engine.exceptions.EngineDeadError)."""


@pytest.mark.parametrize("exc, kind", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "cuda_oom"),
    (RuntimeError("CUDA error: out of memory"), "cuda_oom"),
    (RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors "
                  "might be asynchronously reported"), "illegal_memory_access"),
    (RuntimeError("CUDA error: device-side assert triggered"), "cuda_error"),
    (RuntimeError("CUDA error: unspecified launch failure"), "cuda_error"),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, ...)`"),
     "cublas_error"),
    (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), "cudnn_error"),
    (RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error"), "nccl_error"),
    (EngineDead("the torch engine worker died"), "engine_dead"),
    (EngineDeadError("EngineCore encountered an issue"), "engine_dead"),
])
def test_gpu_faults_are_recognised(exc, kind):
    assert gpu_fault(exc) == kind


@pytest.mark.parametrize("exc", [
    RuntimeError("voice broke"),
    ValueError("out of memory"),          # not a RuntimeError from a device
    MemoryError("host out of memory"),
    RuntimeError("the vllm engine is not started"),
    KeyError("cuda"),
])
def test_other_errors_are_not_gpu_faults(exc):
    assert gpu_fault(exc) is None


def test_a_wrapped_fault_still_counts_and_cycles_end():
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        except RuntimeError as inner:
            raise ValueError("decoder window failed") from inner
    except ValueError as outer:
        assert gpu_fault(outer) == "cuda_oom"
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert gpu_fault(a) is None


class Drains:
    def __init__(self, fail: bool = False) -> None:
        self.reasons: list[str] = []
        self.fail = fail

    @hookimpl
    async def veena_drain(self, reason, runtime):
        assert runtime.phase is Phase.DRAINING
        self.reasons.append(reason)
        if self.fail:
            raise RuntimeError("drain action broke")


def test_draining_starts_once_and_runs_every_drain_hook(caplog):
    broken, working = Drains(fail=True), Drains()
    runtime = build_runtime(parse_config({}), extra=[("broken", broken), ("working", working)])
    runtime.phase = Phase.READY

    async def main():
        first = begin_draining(runtime, "cuda_oom")
        second = begin_draining(runtime, "illegal_memory_access")
        assert second is None
        await first

    asyncio.run(main())
    assert runtime.phase is Phase.DRAINING
    assert broken.reasons == ["cuda_oom"] and working.reasons == ["cuda_oom"]
    assert "the veena_drain hook of broken failed" in caplog.text
