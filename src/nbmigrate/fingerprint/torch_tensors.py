"""torch: tensors hashed through their numpy view; CPU storage as spans, gradients as state."""

from __future__ import annotations

import sys
from typing import Any

from .buffers import _hash_ndarray_bytes
from .core import _WalkerBase
from .tokens import _len, _qual, _str, _tok_bool


class _TorchHandlers(_WalkerBase):
    """Handler for torch tensors."""

    def _h_tensor(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        torch = sys.modules["torch"]
        np = sys.modules.get("numpy")
        strided = o.layout == torch.strided
        cpu = o.device.type == "cpu"
        if self.rec and strided and cpu and not o.is_quantized:
            st = o.untyped_storage()
            n = st.nbytes()
            ptr = st.data_ptr()
            if n and ptr:
                self._span(ptr, ptr + n)
        else:
            self.extra_bytes += o.numel() * o.element_size()
        self.emit(
            b"TT" + _str(_qual(t)) + _str(str(o.dtype)) + _str(str(o.layout)) + _str(o.device.type)
            + b"".join(_len(d) for d in o.shape) + _tok_bool(o.requires_grad)
        )  # fmt: skip
        self._push_attrs_if_any(o)
        if o.is_leaf and o.requires_grad and o.grad is not None:  # .grad of a non-leaf warns
            self.emit(b"Tg")  # gradients are state: backward() changes them, optimizer.step() reads them
            self.stack.append(o.grad)
        if not strided or o.is_quantized or np is None or o.device.type == "meta":
            if o.device.type == "meta":
                return
            rv = o.__reduce_ex__(5)
            self.keep.append(rv)
            self._schedule_mode([rv], False, None)
            return
        self.count += 1
        if not self.live:
            return
        x = o.detach().resolve_conj().resolve_neg()
        if not cpu:
            x = x.cpu()
        try:
            arr = x.numpy()
        except (TypeError, RuntimeError):
            ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
            arr = x.view(ints[x.element_size()]).numpy()
        _hash_ndarray_bytes(self.emit, arr, np)
