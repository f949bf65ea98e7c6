"""What a walk returns (:class:`Fingerprint`), the mutation rule, and the session that keeps ids comparable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fingerprint:
    """What one walk over a value's object graph found.

    ``digest`` is the hex ``xxh3_128`` of the value's content (``None`` when the walk reached
    something opaque or stopped at the budget); ``ids`` the ``id()`` of every persistent mutable
    object reached; ``spans`` the merged ``[start, end)`` address ranges of the raw buffers reached;
    ``opaque`` the type names of objects that could neither be walked nor hashed (at most 10);
    ``complete`` is False when the budget stopped the walk; ``nbytes`` an estimate of the value's
    size (buffer bytes, shared memory counted once, plus ``sys.getsizeof`` of the other objects);
    ``modules`` the third-party top-level packages whose types or functions were reached (standard
    library, ``builtins`` and ``__main__`` excluded); ``session_types`` the qualified names of the
    classes and functions defined in the session (``__module__ == "__main__"``) that were reached.
    """

    digest: str | None
    ids: frozenset[int]
    spans: tuple[tuple[int, int], ...]
    opaque: tuple[str, ...]
    complete: bool
    nbytes: int
    modules: frozenset[str]
    session_types: frozenset[str]


def changed(before: Fingerprint, after: Fingerprint) -> bool:
    """The mutation rule: True unless the two fingerprints prove the value is unchanged.

    Unchanged means: both digests known and equal (same content), same identities (``a[0] =
    copy_of_old`` keeps the content but changes which object is shared with whom) and same buffers.
    """
    if before.digest is None or after.digest is None:
        return True
    return before.digest != after.digest or before.ids != after.ids or before.spans != after.spans


class FingerprintSession:
    """Keeps every temporary created during a pass alive, so ids never collide within the pass.

    Walking a value creates temporaries (``__reduce_ex__`` results, state copies, extension-array
    views) that are memoised by ``id()`` during the walk.  CPython reuses an id as soon as its object
    dies; holding the temporaries until the end of the pass guarantees that no id seen while
    fingerprinting one variable is reused by another object while fingerprinting the next one.
    Use one session per monitoring pass and close it before user code runs again (held temporaries
    may pin memory or buffer exports)::

        with FingerprintSession() as s:
            fps = {name: fingerprint(ns[name], session=s) for name in candidates}
    """

    def __init__(self) -> None:
        self._keep: list[Any] = []

    def __enter__(self) -> FingerprintSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the temporaries held since the session was opened."""
        self._keep.clear()

    @property
    def held(self) -> int:
        """Number of temporaries currently held alive."""
        return len(self._keep)
