"""Serializer: one co-variable group <-> one pickle stream plus out-of-band buffers.

A *group* is a set of names whose objects share sub-objects (DESIGN.md, "Co-variables"): they are
pickled in one stream so that sharing survives. This package turns a group into bytes at checkpoint
time (:func:`dump_group`, :func:`pack_parts`) and back into objects at restore time
(:func:`unpack_parts`, :func:`load_group`). It knows nothing about IPython, the store or the plan.

What a stored group looks like
------------------------------
``SerializedGroup.pickle`` is an envelope around two protocol-5 pickle streams::

    MAIN STREAM | HEADER STREAM | u64 header length | b"NBG1"

The main stream holds ``{name: object}``. The header (plain tuples, ints, str and bytes; read with an
unpickler that resolves no globals) lists the group's names and the *memory regions* of the group.
``SerializedGroup.buffers`` holds the region buffers first, then the out-of-band buffers that
pickle itself produced (pandas, pyarrow, ...). Every buffer is a zero-copy ``memoryview`` of the live
objects' memory: nothing large is copied at dump time, so the views must be written before the
kernel runs more code. Buffers under 64 KiB are kept in-band instead, so a dict of ten thousand
small arrays does not become ten thousand blob parts.

Memory regions: aliasing between arrays, tensors and bytearrays
---------------------------------------------------------------
Plain pickling copies every numpy view and every torch tensor separately (torch even copies the
whole storage once per view), so ``row = base[1]`` no longer aliases ``base`` after a restore.
Instead, every numpy array (exact ``np.ndarray`` with a plain dtype), every torch CPU storage and
every ``bytearray`` that arrays are built over is described as ``(memory region, offset, shape,
strides, dtype)``. Memory owners whose address
ranges contain one another (an array and its views; ``torch.from_numpy(a)`` and ``a``;
``np.frombuffer(raw)`` and ``raw``) become one region, stored once, and are rebuilt over one shared
buffer, so writes through one name stay visible through the others, exactly as in the source kernel.
Only the byte span actually used by the group is stored: a five-row view of an array that is no
longer reachable does not drag the whole base along.

Arrays inside pandas objects are the exception: pandas 3 has copy-on-write semantics (``df2 =
df.iloc[:3]`` shares memory with ``df`` only until one of them is written), and its reference
tracking is not pickled, so re-creating the sharing would make a write to ``df2`` leak into ``df``.
Inside a pandas object, arrays therefore go through numpy's own reducer (one copy per view, out of
band when contiguous; datetime arrays, which numpy keeps in-band, are sent out of band here).

Functions and classes defined in the session
--------------------------------------------
cloudpickle pickles objects whose ``__module__`` is ``"__main__"`` by value, whatever
``sys.modules["__main__"]`` is (it looks at ``__module__``, not at the module). We change two
things for functions whose ``__globals__`` is the
session namespace ``user_ns``:

* their globals dict is written as a reference (the global ``nbmigrate.serialize._SESSION_NAMESPACE``,
  which the unpickler's ``find_class`` resolves to the *target* kernel's ``user_ns``), so
  ``f.__globals__ is user_ns`` after a restore;
* the globals they reference are *not* pickled with them. A function reading a 300 MB global would
  otherwise drag a copy of it, and after the restore it would read that stale private copy instead
  of the live variable. The restorer binds every name, so the function finds them at call time.

References resolved by the unpickler go through ``find_class`` (called once per stream) rather than
``persistent_id``, which the C pickler would call for every object, ints and strs included (twice
the dump time of a dict of a million floats). ``persistent_id`` is needed only for objects pickle
never shows to a reducer (``dict``, ``bytearray``): the namespace held as a value (``g =
globals()``) and bytearrays that arrays are built over. A first pass without the hook stops as soon
as it meets either, and the group is pickled again with it.

This relies on cloudpickle internals, pinned by ``tests/unit/test_serialize.py`` so that an upgrade
that changes them fails loudly (and :func:`dump_group` raises rather than silently pickling globals):

* ``Pickler._function_getnewargs(func)`` returns ``(code, base_globals, name, argdefs, closure)``
  and ``_make_function`` builds the function over ``base_globals``;
* ``Pickler._dynamic_function_reduce(func)`` returns ``(_make_function, newargs, (state,
  slotstate), None, None, _function_setstate)`` where ``slotstate["__globals__"]`` is the dict of
  captured globals that ``_function_setstate`` merges into the function's globals;
* ``Pickler.reducer_override`` handles classes and functions, ``Pickler.dispatch_table`` the rest.

cloudpickle also writes ``__builtins__`` into the globals of every function it rebuilds;
:func:`load_group` puts back whatever ``user_ns["__builtins__"]`` was before.

Objects that can only be pickled by reference to ``__main__``
-------------------------------------------------------------
An ``lru_cache`` wrapper defined in the session reduces to its qualified name, i.e. "look up
``slow_square`` in ``__main__``". In the target kernel that lookup fails, or worse, silently binds
whatever ``slow_square`` is there. :func:`dump_group` refuses such objects (``reducer_override``
sees every reduction that returns a name), and the unpickler refuses any ``__main__`` lookup.

Trust
-----
Unpickling runs code. :func:`load_group` must only ever see bytes whose checksums and manifest HMAC
the store has verified (DESIGN.md, invariant 5).

Objects that are never stored
-----------------------------
cloudpickle would store an open text file as a ``StringIO`` holding the whole file, and a
``memoryview`` as ``bytes``: another type, and no longer tied to the file or buffer. Both are refused
at dump time, so their groups are recomputed by replaying the cells that made them (closed files are
rebuilt as closed files). Two things cloudpickle and torch drop are put back: the ``__slots__`` of a
class defined in the session (cloudpickle sets them after creating the class, where they have no
effect) and the ``.grad`` of a leaf tensor (torch's reducer leaves it out).

Limits
------
* ndarray subclasses (``np.memmap``, ``np.matrix``, masked arrays), object and ``StringDType``
  arrays go through numpy's reducer: copied, without memory shared with other objects.
* Arrays inside pandas objects do not share memory with arrays outside them after a restore (see
  above); nor do owners whose address ranges only partly overlap.
* Restored arrays do not own their memory (``ndarray.resize`` fails, as after any unpickling), and
  restored torch storages are not resizable (``t.resize_`` to a larger size fails).
* A strided view (``base[:, 0]``) spans most of its base, so most of the base is stored with it.
* A bytearray that arrays are built over is copied at dump time (it may be small; it must stay
  resizable for the user). Other buffers are live views: write them before the kernel runs code.
* The namespace held as a value is recognised at the top of a group, or wherever the namespace's
  ``__builtins__`` is a module (always, in IPython); elsewhere it would be pickled as a plain dict.
* cloudpickle maps a class to the live class with the same tracking id in the loading process.
  In a fresh kernel this gives one class for all groups; loading into the process that pickled
  the class (tests) updates that class in place instead of building a new one.
* Restored buffers are as aligned as the store leaves them: zero-copy views of a blob whose parts
  are not 64-byte aligned give unaligned arrays (correct, a little slower).

Layout
------
:mod:`.dump` (objects → envelope + buffers) with :mod:`.pickler` (the group pickler), :mod:`.regions`
(memory regions) and :mod:`.refusals` (failure messages); :mod:`.load` (the way back);
:mod:`.rebuild` (everything stored pickles reference by name); :mod:`.parts` (blob parts and
compression); :mod:`.stream_format` (the constants of the byte format).
"""

from __future__ import annotations

from .dump import SerializedGroup, dump_group
from .load import load_group
from .parts import Part, pack_parts, unpack_parts

# Stored pickles reference these as ``nbmigrate.serialize.<name>`` (see rebuild._stored_by_name):
# the unpickler looks them up here.
from .rebuild import _SESSION_NAMESPACE as _SESSION_NAMESPACE
from .rebuild import _closed_file as _closed_file
from .rebuild import _memory_reference as _memory_reference
from .rebuild import _rebuild_contiguous as _rebuild_contiguous
from .rebuild import _rebuild_ndarray as _rebuild_ndarray
from .rebuild import _rebuild_typed_storage as _rebuild_typed_storage
from .rebuild import _rebuild_untyped_storage as _rebuild_untyped_storage
from .rebuild import _rebuild_with_grad as _rebuild_with_grad
from .rebuild import _SessionNamespace as _SessionNamespace
from .rebuild import _set_scoped_state as _set_scoped_state

__all__ = [
    "Part",
    "SerializedGroup",
    "dump_group",
    "load_group",
    "pack_parts",
    "unpack_parts",
]
