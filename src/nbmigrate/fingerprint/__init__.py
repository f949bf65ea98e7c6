"""Fingerprints of live values: content digest, identity, shared memory — in one walk.

The monitor needs three answers about every variable a cell may have touched, and it needs them after
every cell, so they come from a single walk over the object graph reachable from the value:

* **Did it change?**  A content digest (``xxh3_128``) plus the identities of the mutable objects
  reached plus the memory ranges of the raw buffers reached. :func:`changed` compares two fingerprints
  of one name taken before and after a cell.
* **Does it share state with another variable?**  Two names whose ``ids`` intersect or whose
  ``spans`` overlap are *co-variables* (see :mod:`nbmigrate.covariables`): they must be stored or
  recomputed together, or aliasing is lost.
* **Is the restored value the same?**  The digest depends on content only, never on memory addresses,
  ``id()`` values or ``PYTHONHASHSEED``, so the digest taken at checkpoint time can be compared with the
  digest of the value rebuilt in another process (DESIGN.md invariant 2).

Design choices, and why
-----------------------
*One explicit stack, no recursion.*  Notebook values can be deep (linked structures, nested JSON); the
walk is an iterative pre-order traversal, so Python's recursion limit never truncates it.  The digest
is a single stream of self-delimiting tokens (type tag, lengths, payload) fed to one hasher, in visit
order.  Only sets need sub-digests (their iteration order depends on the hash seed): each element is
hashed separately and the element digests are sorted.

*Back references.*  A mutable object met a second time is encoded as "the n-th object of this walk",
so cycles terminate, ``[a, a]`` and ``[a, copy(a)]`` differ (aliasing is part of the value, DESIGN.md
invariant 1) and the digest stays deterministic.  Immutable containers (tuple, frozenset) are
re-encoded by value, so constant folding or interning never changes a digest.

*Persistent identities only.*  ``ids`` lists only objects reached through references the program
itself holds (container elements, an instance's real ``__dict__``/slots, function defaults and closure
cells, ``ndarray.base``, ``gc.get_referents`` of objects without a better handler...).  Temporaries the
walk creates (results of ``__reduce_ex__``/``__getstate__``, array views, ``tolist()``) are walked for
content in *content-only* mode and never recorded: their ids would differ on every walk (making every
value look mutated) and could collide with ids of other values.  When content-only mode meets an object
that is a real referent of the object being reduced, it switches back to recording.  Immutable values,
modules, library classes and functions are never recorded, nor are *library singletons* and anything
reached through them: module-level attributes of imported modules other than ``__main__`` and the
elements of module-level containers (``matplotlib.rcParams`` values), and class attributes of library
classes (cached paths, default objects).  So ``x = 5; y = 5``, two lists holding ``pd.NA``, or two
figures sharing rcParams defaults are not linked.

*Buffers are hashed, not walked.*  numpy, torch, pyarrow, pandas and polars data are hashed through
the buffer protocol with zero copies (bounded-size chunks for non-contiguous views), so the cost of a
large array is one pass of xxh3 (> 10 GB/s).  Their memory ranges become ``spans``: a view, a
transposition, a Series taken from a DataFrame, ``torch.from_numpy`` all overlap the original.

*Lazy libraries.*  Optional libraries are looked up in ``sys.modules`` only: fingerprinting never
imports numpy, pandas, torch, pyarrow or polars on its own.

*Never raise.*  Any handler that fails turns that sub-object *opaque*: the digest becomes ``None``
("cannot prove unchanged") but the walk continues so identities and spans are still collected.

Cost
----
Linear in the reachable graph.  Each Python object costs 1-4 µs; lists, tuples and dicts of plain atoms
(str/int/float/bytes/None/bool) are encoded in bulk through :mod:`marshal` (100,000 short strings:
~15 ms), sequences of exact ``str`` as NUL-joined UTF-8 (a 4-million-token object array: well under a
second, most of it the element type check), runs of numeric numpy scalars of one type as one buffer;
numeric buffers cost one pass of xxh3 (300 MB: ~20 ms; arrays laid out column-major, such as pandas
blocks of frames built from row-major arrays, go through a cache-sized transposition first).
The first call after new modules are imported scans their module dictionaries for library
singletons (~45 ms with numpy, pandas, torch, sklearn, matplotlib, polars and pyarrow imported:
~2,700 modules, ~32,000 objects pinned; later calls only scan the modules imported since).

Limitations
-----------
* Layout independence: numpy content is hashed in C order and pandas column by column, so strides and
  block layout never matter; Arrow data (pyarrow, pandas ``str``/``pyarrow`` columns, polars) is hashed
  independently of chunking and slicing for fixed-width, boolean and string/binary types, but nested
  and dictionary types are hashed chunk by chunk.  Bytes under null slots and struct padding are hashed
  as they are (Arrow builders zero them).
* Objects pickled through ``__reduce_ex__`` contribute the identities of their real referents that
  appear in the reduce output only; what their ``__getstate__`` leaves out is not an identity.
* User data kept in an imported module (``import mydata; df = mydata.df``) counts as library state:
  its content is hashed, its identity never links two names.
* Lazily filled caches in ``__dict__`` (``functools.cached_property``) are part of the state: the
  first access makes the value look changed (conservative).  Known library caches are left out
  (``state_fixes._CACHE_ATTRS``, pandas dtypes); matplotlib id-keyed state is rewritten
  (``state_fixes._STATE_FIXERS``).
* A pyplot figure's digest changes when it is unpickled into a session that already has figures (its
  figure number); drawing a figure creates artists (ticks), so it looks changed after a draw.
* Spans of non-CPU tensors are not recorded (device memory is another address space); their bytes are
  copied to the host in full to be hashed.  A memory-mapped array is hashed by reading all its pages.
* The budget counts Python objects and container elements, not bytes: a reached 10 GB array is hashed
  in full (bounded by memory bandwidth, ~1 s).
* Without pyarrow imported, polars data is hashed through its IPC serialisation (a copy) and has no
  spans.

Layout
------
:mod:`.result` (what a walk returns, the mutation rule), :mod:`.core` (the generic walk), with
:mod:`.tokens` (the token stream), :mod:`.dispatch` (type → handler), :mod:`.singletons` (library state
never recorded) and :mod:`.state_fixes` (library state rewritten before hashing); one module per
library family for its handlers (:mod:`.numpy_arrays` with :mod:`.buffers`, :mod:`.torch_tensors`,
:mod:`.arrow`, :mod:`.pandas_frames`, :mod:`.polars_frames`, :mod:`.matplotlib_figures`); and
:mod:`.walker`, which composes them and holds :func:`fingerprint`.
"""

from __future__ import annotations

from .result import Fingerprint, FingerprintSession, changed
from .walker import fingerprint

__all__ = ["Fingerprint", "FingerprintSession", "changed", "fingerprint"]
