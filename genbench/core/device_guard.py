"""A device that is not the CPU, simulated on the CPU: proves code device-clean without owning a GPU.

Under :func:`simulated_device`, tensors moved to :data:`SIMULATED` (``.to(SIMULATED)``, ``device=SIMULATED``) report
that device but hold real CPU data, so whole trainings (the real Lightning ``Trainer``, through
:class:`SimulatedAccelerator`), samplers and evaluators run with real numbers. Every operation passes through
:class:`DeviceGuard`, which fails as a GPU would where code mixes a device tensor with a CPU one, and also where model
code creates a CPU tensor in its hot path (which a GPU would accept only through a silent copy, or not at all).

Why this simulation (``docs/design.md``, "GPU readiness"): ``FakeTensorMode`` has no backward and no values, the
``meta`` device alone has no values; a dispatch mode over a wrapper tensor runs training and evaluators end to end
and names the file and line of each mixing. The wrapper reports the ``meta`` device, the one non-CPU device whose
autograd runs without a driver. Blind spots: branches taken only when ``x.is_cuda`` (CUDA RNG states, cuDNN flags),
0-dim CPU tensors (every device accepts them), custom kernels and ``torch.compile``.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim import optimizer as optimizers
from lightning.pytorch.accelerators import Accelerator, AcceleratorRegistry
from lightning.pytorch.strategies import SingleDeviceStrategy, StrategyRegistry
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

SIMULATED = torch.device("meta")
"""The simulated device, as tensors on it report it."""

_LIBRARIES = tuple(str(Path(m.__file__).parent) for m in (torch, contextlib))  # frames skipped when naming a line


class OnDevice(torch.Tensor):
    """A tensor that reports :data:`SIMULATED` and holds its values in ``cpu`` (a plain CPU tensor)."""

    cpu_data: torch.Tensor

    @staticmethod
    def __new__(cls, cpu_data: torch.Tensor):
        t = torch.Tensor._make_wrapper_subclass(cls, cpu_data.shape, strides=cpu_data.stride(),
                                                storage_offset=cpu_data.storage_offset(), dtype=cpu_data.dtype,
                                                device=SIMULATED, requires_grad=cpu_data.requires_grad)
        t.cpu_data = cpu_data
        return t

    def __repr__(self, *, tensor_contents=None):
        return f"OnDevice({self.cpu_data!r})"

    def tolist(self):  # below the dispatcher; a CUDA tensor's tolist copies to the host, and so does this one
        return self.cpu_data.tolist()

    # Indexing turns a Python list into a tensor on the indexed tensor's device below the dispatcher: on ``meta`` that
    # tensor has no values. Made here instead, as CUDA makes it on its device.
    def __getitem__(self, index):
        return super().__getitem__(_listed_on_device(index))

    def __setitem__(self, index, value):
        return super().__setitem__(_listed_on_device(index), value)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # outside simulated_device(): a plain CPU op
        with DeviceGuard():
            return func(*args, **(kwargs or {}))


CPU_OPERANDS_ALLOWED = {torch.ops.aten.copy_.default: (), torch.ops.aten.index.Tensor: (1,),
                        torch.ops.aten.index_put.default: (1,), torch.ops.aten.index_put_.default: (1,),
                        torch.ops.aten._index_put_impl_.default: (1,)}
"""Ops whose CUDA kernels accept CPU operands: a copy between devices, and CPU index tensors (argument 1), which
CUDA moves itself (``x[[0, 3, 1, 2]]`` on a CUDA ``x``)."""


def _checked_operands(func, args, kwargs):
    """The operands that must be on the op's device."""
    allowed = CPU_OPERANDS_ALLOWED.get(func)
    if allowed is None:
        return args, kwargs
    if func is torch.ops.aten.copy_.default:
        return ()
    return [a for i, a in enumerate(args) if i not in allowed], kwargs


def _listed_on_device(index):
    """An index with its Python lists (``x[:, [0, 3, 1, 2]]``) as index tensors on the simulated device."""
    if isinstance(index, list):
        return OnDevice(torch.as_tensor(index))
    if isinstance(index, tuple):
        return tuple(_listed_on_device(i) if isinstance(i, list) else i for i in index)
    return index


@dataclass
class Violation:
    """One device bug: what happened and where (the first frame outside torch and Lightning)."""

    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


class DeviceMixError(RuntimeError):
    """Code mixed a device tensor with a CPU one, or model code created a CPU tensor in its hot path."""


def _caller(skip_lightning: bool = True) -> tuple[str, str]:
    """The file and ``file:line`` of the innermost frame outside torch and the standard library, and outside
    Lightning unless ``skip_lightning`` is False (then a Lightning frame means the Trainer's own work)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        lightning = "/lightning/" in name
        if not (name.startswith(_LIBRARIES) or name == __file__ or name.startswith("<") or lightning and skip_lightning):
            return name, f"{name}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "", "?"


def _is_simulated(device) -> bool:
    return device is not None and torch.device(device).type == SIMULATED.type


class DeviceGuard(TorchDispatchMode):
    """Runs every op on the CPU data behind :class:`OnDevice` tensors and raises :class:`DeviceMixError` where a GPU
    would fail (a device tensor meets a CPU tensor of one or more dimensions), or where code in ``hot`` (files or
    folders) creates a CPU tensor while ``checking``. ``violations`` keeps every finding."""

    def __init__(self, hot: tuple[str, ...] = (), raise_at_once: bool = True):
        super().__init__()
        self.hot, self.raise_at_once = tuple(str(h) for h in hot), raise_at_once
        self.checking, self.violations, self.ops_on_device = False, [], 0

    def report(self, what: str) -> None:
        _, where = _caller()
        self.violations.append(Violation(what, where))
        if self.raise_at_once:
            raise DeviceMixError(str(self.violations[-1]))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if any(t.device.type == SIMULATED.type and not isinstance(t, OnDevice) for t in leaves):
            raise RuntimeError(f"the device simulation met a tensor without values in {func} (made below the "
                               f"dispatcher, as torch.tensor or list indexing make theirs): teach "
                               f"genbench/core/device_guard.py to make it on the CPU")
        on_device = any(isinstance(t, OnDevice) for t in leaves)
        cpu = [t for t in tree_leaves(_checked_operands(func, args, kwargs))
               if isinstance(t, torch.Tensor) and not isinstance(t, OnDevice) and t.dim() > 0]
        device = kwargs.get("device")
        copy = func is torch.ops.aten._to_copy.default and device is not None
        if on_device and cpu and not copy:
            self.report(f"{func} mixes a {SIMULATED.type} tensor with a CPU tensor of shape {tuple(cpu[0].shape)}")
        to_device = _is_simulated(device) or (on_device and device is None)
        if _is_simulated(device):
            kwargs = {**kwargs, "device": torch.device("cpu")}
        unwrapped = tree_map(lambda t: t.cpu_data if isinstance(t, OnDevice) else t, (args, kwargs))
        out = func(*unwrapped[0], **unwrapped[1])
        if self.checking and not on_device and (not leaves or (copy and to_device)):
            self.check_hot_path(func, out, "copies a CPU tensor to the device" if leaves else "creates a CPU tensor"
                                if not to_device else None)
        if to_device:
            self.ops_on_device += 1
            return tree_map(lambda t: OnDevice(t) if type(t) is torch.Tensor else t, out)
        return out

    def check_hot_path(self, func, out, what: str | None) -> None:
        """Model code that creates a CPU tensor of one or more dimensions, or copies one to the device, while
        ``checking``: on a GPU a host-to-device copy at every step, or a failure where it meets a device tensor."""
        if what is None or not isinstance(out, torch.Tensor) or out.dim() == 0 or out.numel() == 0:
            return
        name, _ = _caller(skip_lightning=False)
        if self.hot and name.startswith(self.hot):
            self.report(f"{func} {what} of shape {tuple(out.shape)} in model code")


class SimulatedAccelerator(Accelerator):
    """Lightning's view of :data:`SIMULATED`: one device, nothing to set up (``trainer.accelerator=simulated``)."""

    @classmethod
    def name(cls) -> str:
        return "simulated"

    def setup_device(self, device: torch.device) -> None:
        pass

    def teardown(self) -> None:
        pass

    @staticmethod
    def parse_devices(devices):
        return 1

    @staticmethod
    def get_parallel_devices(devices):
        return [SIMULATED]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return True

    def get_device_stats(self, device) -> dict:
        return {}

    @classmethod
    def register_accelerators(cls, accelerator_registry) -> None:
        accelerator_registry.register(cls.name(), cls, description="a non-CPU device simulated on the CPU")


class _Generator(torch.Generator):
    """``torch.Generator(device=SIMULATED)``: a CPU generator that reports the simulated device, as a CUDA one would
    report CUDA (draws with ``generator=g, device=g.device`` then land on the device)."""

    def __new__(cls, device="cpu"):
        g = super().__new__(cls, device="cpu")
        g.simulated = _is_simulated(device)
        return g

    @property
    def device(self):
        return SIMULATED if self.simulated else torch.device("cpu")


def _from_data(make):
    """``torch.tensor`` and its kin build their tensor below the dispatcher: on the simulated device they would make
    a real (empty) meta tensor. Built on the CPU, then moved through the guard."""

    def from_data(data, *args, device=None, **kwargs):
        if not _is_simulated(device):
            return make(data, *args, device=device, **kwargs)
        return make(data, *args, **kwargs).to(SIMULATED)

    return from_data


def _fused_on_device(supported):
    """Fused optimizers accept the simulated device (its kernels then run on the CPU data)."""
    return lambda: [*supported(), SIMULATED.type]


PATCHED = [(torch, "Generator", lambda _: _Generator), (torch, "tensor", _from_data), (torch, "as_tensor", _from_data),
           (torch, "asarray", _from_data),
           (optimizers, "_get_fused_kernels_supported_devices", _fused_on_device)]
"""What :func:`simulated_device` replaces while it runs: (owner, name, the replacement made from the original)."""


@contextlib.contextmanager
def simulated_device(hot: tuple[str | Path, ...] = (), raise_at_once: bool = True):
    """Within: :data:`SIMULATED` works as a device (``Trainer(accelerator="simulated", strategy="simulated")``, ``.to(SIMULATED)``,
    ``torch.Generator(device=SIMULATED)``) and every op is guarded; yields the :class:`DeviceGuard`.
    ``hot``: files or folders whose CPU tensor creations count as bugs while ``guard.checking`` is True."""
    if "simulated" not in AcceleratorRegistry:
        SimulatedAccelerator.register_accelerators(AcceleratorRegistry)
    if "simulated" not in StrategyRegistry:  # Lightning puts an unknown accelerator's one device on the CPU
        StrategyRegistry.register("simulated", SingleDeviceStrategy, device=SIMULATED,
                                  description="one simulated device")
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PATCHED]
    try:
        for (owner, name, make), (_, _, original) in zip(PATCHED, originals):
            setattr(owner, name, make(original))
        with DeviceGuard(tuple(str(h) for h in hot), raise_at_once) as guard:
            yield guard
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
