"""What a cell may read, what it binds, and why replaying it may not reproduce its effects.

This is the static half of the monitor (see DESIGN.md, "Monitor"): given the source of a cell *after*
IPython's ``shell.transform_cell`` and the user namespace, :func:`analyze_cell` returns a
:class:`CellAccess`. Writes and deletes are measured by the monitor from the namespace before and after
the cell; this package only says which names the cell *may* have looked at (so their versions become
the cell's inputs, and they become mutation candidates), which names its syntax binds, and what could
make a replay differ from the original run.

The package is pure: no IPython import, nothing is called on user objects (no ``getattr`` that could run
user code; modules are read through their ``__dict__``), and nothing here ever raises. Everything
that depends only on the source text is parsed once and cached; resolution against the namespace is
redone on every call because the namespace changes between calls.

Reads are an over-approximation. Worked example (two cells run in order)::

    cell 1:  scale = 2
             def f(v):
                 return v * scale

    cell 2:  y = f(3)
             y += offset

Cell 2 reads ``f`` (a free name), ``y`` (augmented assignment reads its target) and ``offset``; and
because ``f`` is a function defined in the session, also ``scale``, which ``f``'s code loads as a global.
Its ``bound`` is ``{"y"}``. If cell 1 is later rerun with ``scale = 3``, the AHG knows cell 2's result
depended on the old ``scale`` even though cell 2 never mentions it.

Scoping follows Python's rules, so locals never masquerade as globals::

    cell 1:  xs = [1, 2, 3]
    cell 2:  total = sum(x * k for x in xs)
             def g(a, b=limit):
                 global hits
                 hits += 1
                 return [a for a in range(b)]

Cell 2 reads ``sum``, ``xs``, ``k`` (free inside the generator), ``limit`` (a default is evaluated when
the ``def`` runs) and ``hits`` (declared ``global``: both read and bound), ``range``; not ``x`` or ``a``
(comprehension targets) nor ``b`` (a parameter). Builtins appear in ``reads`` like any other free
name: the monitor intersects reads with the names it tracks, and a user who rebinds ``len`` does read
it.

Magics arrive as ``get_ipython().run_line_magic(name, line)`` / ``run_cell_magic(name, line, body)``
/ ``system(cmd)`` / ``getoutput(cmd)`` calls (only with the literal ``get_ipython()`` receiver):

* ``time``, ``prun`` (line or cell): the code runs in the namespace, so its reads and bindings are
  the cell's. ``timeit``: its reads only (IPython compiles it inside a function), ``-v name`` binds
  ``name``, and the hazard ``timing magic: %timeit``. Option flags (``-o -q -n 5 -r 3``) are skipped.
* ``capture``: the line's output name is bound, the body is analysed like the cell itself.
* ``system``/``getoutput`` (``!cmd``, ``x = !cmd``), ``%%bash``/``%%sh``/``%%script``, ``%sx``, ``%pip``
  and IPython's shell aliases (``%ls``...): hazard ``shell command: <first 60 chars>``; ``{expr}`` and
  ``$name.attr`` in the command are read (IPython interpolates them from the namespace); path-looking
  tokens go to ``paths``.
* ``who``, ``whos``, ``who_ls``, ``store``, ``reset``, ``reset_selective``, ``xdel``, ``run -i``:
  conservative. Everything else (``env``, ``pwd``, ``writefile``, ``matplotlib``...): no hazard; the
  line is only interpolated and scanned for paths.

Magic bodies are raw IPython text; if one does not parse as Python, a minimal line-level transform of
``%magic`` / ``!cmd`` / ``x = !cmd`` lines is tried before giving up (conservative).

Hazard strings, ``"<family>: <detail>"``: ``unseeded randomness: numpy.random.rand`` (``...()`` when
the hazard is a seedless constructor or reseed, e.g. ``numpy.random.default_rng()``), ``clock:
time.time``, ``uuid: uuid.uuid4``, ``entropy: os.urandom`` / ``entropy: secrets.token_hex``,
``process hash: hash()``, ``process address: id()``, ``shell command: ls nb_tmp`` (or the
``subprocess``/``os.system`` callable), ``timing magic: %timeit``, ``output cache: _3``, ``input
cache: _i3``, and ``analysis failed: <ExcType>``.

Layout: :mod:`.syntax` (the cached syntax walk, with :mod:`.scopes` for Python scoping and
:mod:`.magics` for magic and shell text), :mod:`.hazards` (the table of callables a replay does not
reproduce), :mod:`.bytecode` (globals read by compiled session functions), :mod:`.safe_reads` (reads
of user objects that run no user code) and :mod:`.session` (resolution against the namespace and
:func:`analyze_cell`).
"""

from __future__ import annotations

from .session import CellAccess, analyze_cell, function_globals

__all__ = ["CellAccess", "analyze_cell", "function_globals"]
