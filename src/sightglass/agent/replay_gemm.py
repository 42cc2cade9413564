"""The shipped replay hook: a fixed-seed GEMM known-answer test on each GPU (torch or cupy).

    python -m sightglass.agent.replay_gemm --gpus 0,1,2,3 [--seed 1234] [--size 2048] [--iterations 8]

``[agent.diagnostics] replay_command = ["python3", "-m", "sightglass.agent.replay_gemm", "--gpus", "{gpus}",
"--seed", "{seed}"]`` makes the agent run it for the server's replay tasks (``sightglass.agent.replay``).

The matrices hold small integers (-2..2) drawn from ``seed``, so every product and every partial sum
is an integer far below 2^24: a float32 GEMM computes them exactly whatever the summation order,
tiling or kernel, on any GPU model, TF32 or not (TF32 keeps 10 mantissa bits: -2..2 is exact). The
result therefore has one right answer, computed here on the CPU in float64 (exact too) as
``reference``; a GPU whose checksum differs computed a wrong bit. Each GPU runs the GEMM
``iterations`` times; the checksum is the SHA-256 of every iteration's result (so one bad iteration
shows). A real training replay is stronger for data-dependent defects; this catches GPUs that
corrupt a plain GEMM, in seconds.

Exit 0 with the JSON on stdout; exit 2 with the reason on stderr (no torch/cupy, no such GPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Matmul = Callable[[np.ndarray, np.ndarray, int], list[np.ndarray]]


def inputs(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(-2, 3, size=(size, size)).astype(np.float32)
    b = rng.integers(-2, 3, size=(size, size)).astype(np.float32)
    return a, b


def digest(results: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for r in results:
        h.update(np.ascontiguousarray(r, dtype=np.float32).tobytes())
    return h.hexdigest()


def reference(seed: int, size: int, iterations: int) -> str:
    """The known answer: the same product in float64 on the CPU (exact for these integers)."""
    a, b = inputs(seed, size)
    c = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    return digest([c] * iterations)


def _torch_matmul(gpu: int) -> Matmul:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False

    def run(a: np.ndarray, b: np.ndarray, iterations: int) -> list[np.ndarray]:
        dev = torch.device(f"cuda:{gpu}")
        ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
        outs = [torch.matmul(ta, tb) for _ in range(iterations)]
        torch.cuda.synchronize(dev)
        return [o.cpu().numpy() for o in outs]

    return run


def _cupy_matmul(gpu: int) -> Matmul:
    import cupy

    def run(a: np.ndarray, b: np.ndarray, iterations: int) -> list[np.ndarray]:
        with cupy.cuda.Device(gpu):
            ca, cb = cupy.asarray(a), cupy.asarray(b)
            outs = [ca @ cb for _ in range(iterations)]
            cupy.cuda.Device(gpu).synchronize()
            return [cupy.asnumpy(o) for o in outs]

    return run


def backend() -> tuple[str, Callable[[int], Matmul]]:
    try:
        import torch

        if torch.cuda.is_available():
            return "torch", _torch_matmul
    except ImportError:
        pass
    try:
        import cupy  # noqa: F401

        return "cupy", _cupy_matmul
    except ImportError:
        pass
    raise RuntimeError("no GPU array library: install torch (with CUDA) or cupy to run the GEMM replay")


def known_answer(
    gpus: list[int], make: Callable[[int], Matmul], *, seed: int, size: int, iterations: int
) -> dict[str, Any]:
    a, b = inputs(seed, size)
    rows = []
    for g in gpus:
        t0 = time.perf_counter()
        outs = make(g)(a, b, iterations)
        rows.append({"index": g, "checksum": digest(outs), "seconds": round(time.perf_counter() - t0, 3)})
    return {"input": f"gemm-int-{size}x{size}-seed-{seed}-x{iterations}",
            "reference": reference(seed, size, iterations), "gpus": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sightglass.agent.replay_gemm", description=__doc__.split("\n")[0]
    )
    p.add_argument("--gpus", required=True, help="comma-separated GPU indices")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--iterations", type=int, default=8)
    a = p.parse_args(argv)
    try:
        gpus = [int(x) for x in a.gpus.split(",") if x.strip()]
    except ValueError:
        print(f"--gpus must be comma-separated integers, got {a.gpus!r}", file=sys.stderr)
        return 2
    if not gpus or not 16 <= a.size <= 16384 or not 1 <= a.iterations <= 1000:
        print("need at least one GPU, --size 16..16384 and --iterations 1..1000", file=sys.stderr)
        return 2
    try:
        name, make = backend()
        doc = known_answer(gpus, make, seed=a.seed, size=a.size, iterations=a.iterations)
    except Exception as e:  # no library, no such device, out of memory: the agent reports the reason
        print(f"GEMM replay failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    doc["backend"] = name
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
