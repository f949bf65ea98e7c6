"""The hazard table: library and builtin callables whose result a replay does not reproduce.

Each :class:`_Rule` names one known source of irreproducibility (unseeded randomness, the clock,
entropy, another process...); :func:`_table` indexes them over the modules loaded now, and
:func:`_classify` turns a matched call into a hazard or a seed.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from typing import Any, Final

from .safe_reads import _MISSING, _isa


@dataclass(frozen=True)
class _Rule:
    """One known source of irreproducibility.

    ``name`` is the canonical dotted name (used in the hazard text). ``kind`` is the hazard family;
    ``rng:*`` kinds name the generator family so that seeding it earlier in the same cell (or the same
    function) cancels the hazard. ``when``: ``always``; ``noargs`` (only when called without a seed);
    ``nogen`` (unless called with an explicit ``generator=``); ``called`` (only when called: printing
    the builtin ``id`` is harmless); ``seed`` (a seeding call: with a seed it
    makes later draws of its family reproducible, without one it reseeds from OS entropy).
    """

    name: str
    kind: str
    when: str = "always"


def _rules(prefix: str, names: str, kind: str, when: str = "always") -> list[_Rule]:
    return [_Rule(f"{prefix}.{n}", kind, when) for n in names.split()]


_HAZARD_RULES: Final[tuple[_Rule, ...]] = (
    # Python's ``random`` module functions are bound methods of one hidden, OS-seeded ``Random``;
    # without ``random.seed(n)`` earlier in the cell they differ on every run. ``SystemRandom`` reads
    # OS entropy and cannot be seeded at all. ``Random()`` with no seed is seeded from OS entropy;
    # ``Random(3)`` is reproducible. ``random.seed()`` with no argument reseeds from entropy.
    *_rules(
        "random",
        "random uniform triangular randint choice randrange sample shuffle choices normalvariate "
        "lognormvariate expovariate vonmisesvariate gammavariate gauss betavariate paretovariate "
        "weibullvariate getrandbits randbytes binomialvariate SystemRandom",
        "rng:random",
    ),
    _Rule("random.Random", "rng:random", "noargs"),
    _Rule("random.seed", "rng:random", "seed"),
    # numpy's legacy API (``np.random.rand`` & co.) draws from one global, entropy-seeded RandomState;
    # ``np.random.seed(n)`` makes it reproducible, ``np.random.seed()`` reseeds from entropy.
    # ``default_rng()``, ``RandomState()``, ``SeedSequence()`` and the bit generators without a seed
    # (or with ``None``) are seeded from OS entropy; with a seed they are reproducible.
    *_rules(
        "numpy.random",
        "rand randn randint random random_sample ranf sample random_integers choice bytes shuffle "
        "permutation beta binomial chisquare dirichlet exponential f gamma geometric gumbel "
        "hypergeometric laplace logistic lognormal logseries multinomial multivariate_normal "
        "negative_binomial noncentral_chisquare noncentral_f normal pareto poisson power rayleigh "
        "standard_cauchy standard_exponential standard_gamma standard_normal standard_t triangular "
        "uniform vonmises wald weibull zipf",
        "rng:numpy",
    ),
    *_rules(
        "numpy.random",
        "default_rng RandomState SeedSequence MT19937 PCG64 PCG64DXSM Philox SFC64",
        "rng:numpy",
        "noargs",
    ),
    _Rule("numpy.random.seed", "rng:numpy", "seed"),
    # torch's sampling functions and ``torch.nn.init`` initialisers draw from the global generator
    # unless given ``generator=``; ``torch.manual_seed(n)`` makes them reproducible and ``torch.seed()``
    # reseeds from entropy. Layers whose constructor initialises weights randomly are listed too
    # (constant-initialised ones such as the norm layers are not). Dropout draws at call time, which
    # no table can see.
    *_rules(
        "torch",
        "rand randn randint randperm rand_like randn_like randint_like normal bernoulli multinomial poisson",
        "rng:torch",
        "nogen",
    ),
    *_rules(
        "torch.nn.init",
        "uniform_ normal_ trunc_normal_ xavier_uniform_ xavier_normal_ kaiming_uniform_ kaiming_normal_ "
        "orthogonal_ sparse_ uniform normal xavier_uniform xavier_normal kaiming_uniform kaiming_normal "
        "orthogonal sparse",
        "rng:torch",
        "nogen",
    ),
    *_rules(
        "torch.nn",
        "Linear Bilinear LazyLinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d "
        "LazyConv1d LazyConv2d LazyConv3d LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d "
        "Embedding EmbeddingBag RNN LSTM GRU RNNCell LSTMCell GRUCell MultiheadAttention Transformer "
        "TransformerEncoderLayer TransformerDecoderLayer AdaptiveLogSoftmaxWithLoss",
        "rng:torch",
    ),
    _Rule("torch.seed", "rng:torch"),
    _Rule("torch.manual_seed", "rng:torch", "seed"),
    _Rule("torch.random.manual_seed", "rng:torch", "seed"),
    # The wall clock and process timers give a different value on every run. ``localtime()`` & co.
    # read the clock only when called without a timestamp.
    *_rules(
        "time",
        "time time_ns perf_counter perf_counter_ns monotonic monotonic_ns process_time process_time_ns "
        "thread_time thread_time_ns",
        "clock",
    ),
    *_rules("time", "localtime gmtime ctime asctime", "clock", "noargs"),
    *_rules("datetime.datetime", "now utcnow today", "clock"),
    _Rule("datetime.date.today", "clock"),
    # uuid1 embeds the clock and host, uuid4 is random (uuid3/uuid5 are hashes: reproducible).
    *_rules("uuid", "uuid1 uuid4 uuid6 uuid7", "uuid"),
    # OS entropy: never reproducible. Every public function of ``secrets`` but compare_digest.
    *_rules("os", "urandom getrandom", "entropy"),
    *_rules("secrets", "choice randbelow randbits SystemRandom token_bytes token_hex token_urlsafe", "entropy"),
    # ``hash()`` of str/bytes is salted per process (PYTHONHASHSEED); ``id()`` is an address.
    _Rule("builtins.hash", "hash", "called"),
    _Rule("builtins.id", "address", "called"),
    # Another process: its effects and output depend on the machine, not on the namespace.
    *_rules("os", "system popen", "shell"),
    *_rules("subprocess", "run call check_call check_output Popen getoutput getstatusoutput", "shell"),
)
"""Known nondeterministic callables, by canonical dotted name (see the comments per group).

Matching is by object identity when the module is loaded (so ``from numpy.random import rand as r``
is caught), by canonical name otherwise (a cell that imports ``secrets`` and uses it before the import
has run), and, for bound methods, by ``(__self__, __name__)`` (``datetime.datetime.now`` is a fresh
object on each access). Bound methods of the hidden ``random._inst`` and of numpy's global
``RandomState`` found at build time are added, so new draw functions are covered. A bound ``now``,
``today`` or ``utcnow`` of any ``datetime.date`` subclass (``pandas.Timestamp.now``) reads the clock.
"""

_WATCHED_MODULES: Final = (
    "builtins", "random", "numpy", "numpy.random", "numpy.random.mtrand", "torch", "torch.nn",
    "torch.nn.init", "time", "datetime", "uuid", "os", "secrets", "subprocess",
)  # fmt: skip

_CLOCK_METHODS: Final = frozenset({"now", "today", "utcnow"})


class _Table:
    """Index of :data:`_HAZARD_RULES` over the modules loaded when it was built."""

    def __init__(self) -> None:
        self.by_name: dict[str, _Rule] = {}
        self.by_id: dict[int, tuple[Any, _Rule]] = {}
        self.by_self: dict[tuple[int, str], tuple[Any, _Rule]] = {}
        self.date_cls: Any = None

    def add_object(self, obj: Any, rule: _Rule) -> None:
        self.by_id.setdefault(id(obj), (obj, rule))
        if type(obj) in (types.BuiltinMethodType, types.MethodType):
            owner = getattr(obj, "__self__", None)
            name = getattr(obj, "__name__", None)
            if owner is not None and isinstance(name, str):
                self.by_self.setdefault((id(owner), name), (owner, rule))

    @classmethod
    def build(cls) -> _Table:
        table = cls()
        for rule in _HAZARD_RULES:
            table.by_name[rule.name] = rule
            obj = _object_by_name(rule.name)
            if obj is not _MISSING:
                table.add_object(obj, rule)
        rnd = sys.modules.get("random")
        if rnd is not None:
            inst = vars(rnd).get("_inst")
            for name, value in list(vars(rnd).items()):
                if name.startswith("_") or name in ("seed", "getstate", "setstate"):
                    continue
                if inst is not None and getattr(value, "__self__", None) is inst:
                    table.add_object(value, _Rule(f"random.{name}", "rng:random"))
        nprand, mtrand = sys.modules.get("numpy.random"), sys.modules.get("numpy.random.mtrand")
        if nprand is not None and mtrand is not None:
            glob = vars(mtrand).get("_rand")
            for name, value in list(vars(nprand).items()):
                if name.startswith("_") or name in ("seed", "get_state", "set_state"):
                    continue
                if glob is not None and type(value) is types.MethodType and value.__self__ is glob:
                    rule = _Rule(f"numpy.random.{name}", "rng:numpy")
                    table.add_object(value, rule)
                    table.by_name.setdefault(rule.name, rule)
        dt = sys.modules.get("datetime")
        if dt is not None:
            table.date_cls = vars(dt).get("date")
        return table

    def match(self, obj: Any, qual: str | None) -> _Rule | None:
        if obj is not _MISSING:
            hit = self.by_id.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            if type(obj) in (types.BuiltinMethodType, types.MethodType):
                owner = obj.__self__
                name = obj.__name__
                hit2 = self.by_self.get((id(owner), name))
                if hit2 is not None and hit2[0] is owner:
                    return hit2[1]
                if (
                    self.date_cls is not None
                    and name in _CLOCK_METHODS
                    and _isa(owner, type)
                    and issubclass(owner, self.date_cls)
                ):
                    return _Rule(f"{owner.__qualname__}.{name}", "clock")
        if qual is not None:
            return self.by_name.get(qual)
        return None


def _static_member(owner: type, name: str) -> Any:
    """``owner.name`` without running user descriptors; classmethods are bound, staticmethods unwrapped."""
    for klass in type.__dict__["__mro__"].__get__(owner):
        d = type.__dict__["__dict__"].__get__(klass)
        if name in d:
            raw = d[name]
            if _isa(raw, classmethod) or type(raw).__name__ == "classmethod_descriptor":
                return raw.__get__(None, owner)
            if _isa(raw, staticmethod):
                return raw.__func__
            return raw
    return _MISSING


def _step(obj: Any, qual: str | None, attr: str) -> tuple[Any, str | None]:
    """One ``.attr`` step of a dotted reference: modules through their dict, classes statically."""
    nxt: Any = _MISSING
    if _isa(obj, types.ModuleType):
        nxt = vars(obj).get(attr, _MISSING)
        if nxt is _MISSING and qual is not None:
            nxt = sys.modules.get(f"{qual}.{attr}", _MISSING)
    elif _isa(obj, type):
        nxt = _static_member(obj, attr)
    elif obj is _MISSING and qual is not None:
        nxt = sys.modules.get(f"{qual}.{attr}", _MISSING)
    new_qual = f"{qual}.{attr}" if qual is not None else None
    if _isa(nxt, types.ModuleType):
        name = vars(nxt).get("__name__")
        new_qual = name if isinstance(name, str) else new_qual
    return nxt, new_qual


def _object_by_name(dotted: str) -> Any:
    """Resolve a canonical dotted name through already-imported modules only (never imports)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None:
            obj: Any = mod
            qual: str | None = ".".join(parts[:i])
            for attr in parts[i:]:
                obj, qual = _step(obj, qual, attr)
                if obj is _MISSING:
                    return _MISSING
            return obj
    return _MISSING


_table_cache: list[tuple[tuple[int, ...], _Table]] = []


def _table() -> _Table:
    key = tuple(id(sys.modules.get(m)) for m in _WATCHED_MODULES)
    if _table_cache and _table_cache[0][0] == key:
        return _table_cache[0][1]
    table = _Table.build()
    _table_cache[:] = [(key, table)]
    return table


def _rule_label(rule: _Rule, noarg_call: bool) -> str:
    kind = rule.kind
    suffix = "()" if noarg_call else ""
    if kind.startswith("rng:"):
        return f"unseeded randomness: {rule.name}{suffix}"
    if kind == "hash":
        return "process hash: hash()"
    if kind == "address":
        return "process address: id()"
    if kind == "shell":
        return f"shell command: {rule.name}"
    return f"{kind}: {rule.name}{suffix}"


@dataclass(frozen=True)
class _Outcome:
    seed: bool  # True: a seeding call for ``family``; False: a hazard ``label``
    family: str
    label: str


def _classify(rule: _Rule, call: int, generator_kw: bool) -> _Outcome | None:
    when = rule.when
    if when == "always":
        return _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "noargs":
        return _Outcome(False, rule.kind, _rule_label(rule, True)) if call == 0 else None
    if when == "called":
        return None if call < 0 else _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "nogen":
        return None if generator_kw else _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "seed":
        if call == 0:
            return _Outcome(False, rule.kind, _rule_label(rule, True))
        if call == 1:
            return _Outcome(True, rule.kind, "")
    return None


_OUTPUT_CACHE = re.compile(r"^(_{1,3}|_\d+|Out|_oh)$")
_INPUT_CACHE = re.compile(r"^(_i{1,3}|_i\d+|In|_ih)$")


def _cache_hazard(name: str) -> str | None:
    if _OUTPUT_CACHE.match(name):
        return f"output cache: {name}"
    if _INPUT_CACHE.match(name):
        return f"input cache: {name}"
    return None
