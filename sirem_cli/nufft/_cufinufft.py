"""CUDA NUFFT backend on cufinufft: the only module that imports cufinufft.

Data stay torch CUDA tensors end to end (cufinufft reads them through
``__cuda_array_interface__`` / ``data_ptr``); no cupy is needed. Plans run on torch's
current CUDA stream of the op's device at plan time. numpy inputs are copied to the
device and results copied back; CPU tensors come back as CPU tensors.

Import this module only after :func:`sirem_cli.nufft.backend.select_backend` said
cufinufft works; :func:`sirem_cli.nufft.make_nufft` does that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sirem_cli.errors import BackendUnavailable, InputError
from sirem_cli.imaging import is_torch
from sirem_cli.nufft.backend import GPU_FIX
from sirem_cli.nufft.base import NufftOp

#: Plan options for the adjoint (type 1) unless ``plan_opts`` says otherwise: the sorted
#: points-driven spreader (GM-sort). cufinufft's automatic choice for 2D is the shared-memory
#: spreader, which on the USC spiral (8 coils x 8190 points onto 84 x 84) measured 7x slower on
#: an H200: 0.54 against 0.078 ms/frame, at the same accuracy (bench/bench_nufft.py --sweep).
TYPE1_DEFAULTS = {"gpu_method": 1, "gpu_sort": 1}


class CufinufftOp(NufftOp):
    """cufinufft-backed 2D NUFFT on one CUDA device; see :class:`NufftOp`.

    Args:
        traj, im_shape, eps, max_plans: as for :class:`NufftOp`.
        device: ``"cuda"`` or ``"cuda:N"``.
        n_threads: ignored (GPU).
    """

    backend = "cufinufft"

    def __init__(self, traj: Any, im_shape: Any, *, device: str = "cuda", **kwargs: Any) -> None:
        super().__init__(traj, im_shape, **kwargs)
        try:
            import cufinufft  # noqa: F401
            import torch
        except Exception as exc:  # ImportError or a CUDA runtime OSError
            raise BackendUnavailable(f"cufinufft cannot be imported ({exc}); {GPU_FIX}") from None
        dev = torch.device(device)
        if dev.type != "cuda":
            raise BackendUnavailable(f"cufinufft needs a CUDA device, got {device!r}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self._torch_device = dev
        self.device = str(dev)
        self._pts: dict[str, tuple[Any, Any]] = {}

    def _points(self, cdtype: str) -> tuple[Any, Any]:
        import torch

        pts = self._pts.get(cdtype)
        if pts is None:
            real = torch.float32 if cdtype == "complex64" else torch.float64
            t = torch.as_tensor(self.traj, dtype=real, device=self._torch_device)
            pts = (t[:, 0].contiguous(), t[:, 1].contiguous())
            self._pts[cdtype] = pts
        return pts

    def _make_plan(self, nufft_type: int, cdtype: str, n_trans: int) -> Any:
        import cufinufft
        import torch

        with torch.cuda.device(self._torch_device):
            stream = torch.cuda.current_stream(self._torch_device).cuda_stream
            defaults = {
                "gpu_device_id": self._torch_device.index,
                "gpu_stream": stream,
                **(TYPE1_DEFAULTS if nufft_type == 1 else {}),
            }
            try:
                plan = cufinufft.Plan(
                    nufft_type,
                    self.im_shape,
                    **self.plan_kwargs(nufft_type, cdtype, n_trans, defaults),
                )
            except TypeError as exc:  # cufinufft: "Invalid option 'name'"
                if "Invalid option" not in str(exc):
                    raise
                raise InputError(f"plan_opts: cufinufft: {exc}") from None
            x, y = self._points(cdtype)
            plan.setpts(x, y)
        return plan

    def _to_native(self, data: Any, cdtype: str) -> Any:
        import torch

        tdtype = getattr(torch, cdtype)
        if is_torch(data):
            tensor = data.detach().resolve_conj().resolve_neg()
            return tensor.to(device=self._torch_device, dtype=tdtype).contiguous()
        return torch.as_tensor(np.ascontiguousarray(data), device=self._torch_device).to(tdtype)

    def _to_user(self, out: Any, like: Any) -> Any:
        if is_torch(like):
            return out if like.device == out.device else out.to(like.device)
        return out.cpu().numpy()

    def _empty(self, shape: tuple[int, ...], cdtype: str, like: Any) -> Any:
        import torch

        return torch.zeros(shape, dtype=getattr(torch, cdtype), device=self._torch_device)

    def _execute(self, nufft_type: int, data: Any, cdtype: str) -> Any:
        import torch

        n_trans = int(data.shape[0])
        key = (nufft_type, cdtype, n_trans)
        plan = self._cached_plan(key, lambda: self._make_plan(nufft_type, cdtype, n_trans))
        if nufft_type == 1:
            shape: tuple[int, ...] = (n_trans, *self.im_shape)
        else:
            shape = (n_trans, self.n_points)
        out = torch.empty(shape, dtype=getattr(torch, cdtype), device=self._torch_device)
        with torch.cuda.device(self._torch_device):
            plan.execute(data, out=out)
        return out
