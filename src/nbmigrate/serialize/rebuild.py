"""What stored pickles reference by name: the rebuilders of arrays, storages, closed files and pandas state.

Every object here is pickled as ``nbmigrate.serialize.<name>`` (see :func:`_stored_by_name`):
renaming one breaks old checkpoints.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

import numpy as np

_PICKLED_MODULE: Final = "nbmigrate.serialize"
"""The module stored pickles name for everything here (the package re-exports it all)."""

_T = TypeVar("_T")


def _stored_by_name(obj: _T) -> _T:
    """Name ``obj`` ``nbmigrate.serialize.<name>`` in pickles, wherever the package keeps its code.

    Stored checkpoints reference these objects by that name: moving them to another module must not
    change the bytes a group pickles to, nor break checkpoints written before the move.
    """
    obj.__module__ = _PICKLED_MODULE
    return obj


@_stored_by_name
class _SessionNamespace:
    """Stands for the kernel's namespace in pickles: the globals of session functions.

    It pickles as the global ``nbmigrate.serialize._SESSION_NAMESPACE``, which the unpickler of
    :func:`load_group` resolves to the target namespace (``find_class``). Loaded any other way, the
    functions fail to build instead of getting a wrong namespace.
    """

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_SESSION_NAMESPACE"


_SESSION_NAMESPACE: Final = _SessionNamespace()


@_stored_by_name
def _memory_reference(index: int) -> tuple[Any, int]:
    """Resolves a memory reference; :func:`load_group` replaces it by one that knows the regions."""
    raise pickle.UnpicklingError("nbmigrate groups can only be loaded with nbmigrate.serialize.load_group")


@_stored_by_name
def _closed_file(kind: str, name: Any, mode: str) -> Any:
    """An already-closed file object of the same type, name and direction as the original.

    ``with open(p) as f:`` leaves ``f`` bound to a closed file: it holds no state but its name, and
    a restore that rebuilds it spares replaying the cell just for a dead handle.
    """
    writing = any(c in mode for c in "wax+")
    if kind == "FileIO":
        fh: Any = io.FileIO(os.devnull, "w" if writing else "r")
        raw = fh
    else:
        text = kind == "TextIOWrapper"
        fh = open(os.devnull, ("w" if writing else "r") + ("" if text else "b"))  # noqa: SIM115
        raw = fh.buffer.raw if text else fh.raw
    try:
        raw.name = name
    finally:
        fh.close()
    return fh


@_stored_by_name
def _rebuild_with_grad(func: Callable[..., Any], args: tuple[Any, ...], grad: Any) -> Any:
    tensor = func(*args)
    tensor.grad = grad
    return tensor


@_stored_by_name
def _rebuild_ndarray(
    region: tuple[Any, int],
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    dtype: np.dtype[Any],
    writeable: bool,
) -> np.ndarray[Any, Any]:
    memory, delta = region
    arr: np.ndarray[Any, Any] = np.ndarray(shape, dtype=dtype, buffer=memory, offset=delta + offset, strides=strides)
    if not writeable:
        arr.flags.writeable = False
    return arr


@_stored_by_name
def _rebuild_contiguous(
    buffer: Any, dtype: np.dtype[Any], shape: tuple[int, ...], order: Literal["C", "F"], writeable: bool
) -> np.ndarray[Any, Any]:
    arr = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
    if not writeable:
        arr.flags.writeable = False
    return arr


@_stored_by_name
def _rebuild_untyped_storage(region: tuple[Any, int] | None, nbytes: int) -> Any:
    import torch

    torch_module: Any = torch
    if region is None:
        return torch_module.UntypedStorage(0)
    memory, delta = region
    view = memoryview(memory).cast("B")[delta : delta + nbytes]
    return torch_module.frombuffer(view, dtype=torch_module.uint8).untyped_storage()


@_stored_by_name
def _rebuild_typed_storage(untyped: Any, dtype: Any) -> Any:
    import torch

    storage_module: Any = torch.storage
    return storage_module.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


@_stored_by_name
def _set_scoped_state(obj: Any, packed: tuple[Any, Any, Any]) -> None:
    """State setter of pandas objects reduced by ``_enter_pandas``: do what BUILD would have done."""
    setter, state, _marker = packed
    if setter is not None:
        setter(obj, state)
        return
    if state is None:
        return
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        inst_dict = obj.__dict__
        for key, value in state.items():
            inst_dict[sys.intern(key) if type(key) is str else key] = value
    if slotstate:
        for key, value in slotstate.items():
            setattr(obj, key, value)
