"""The instruction world of the ``instruction`` track: generated prompt/response examples with
known answers (spec: shared/reference/tracks-phase2.md §2.3). Two versions: ``version=1`` (the
world of ``instruction/quick@1``, kept bit-identical) and ``version=2`` (issue 36; see "World v2"
below). This docstring describes v1 first.

Word-level vocabulary (``VOCAB``, fixed order): the specials ``<pad> <bos> <sep> <eos> :``,
letters ``a``–``z``, digits ``0``–``9``, the keywords of the phrasings, and knowledge-base
entities ``C0..C31`` (countries), ``T0..T31`` (cities), ``O0..O31`` (objects), ``K0..K7``
(colours). One example is ``<bos> prompt <sep> response <eos>``, right-padded to ``ctx``.

Eleven task families, two phrasings each (``s`` a letter string of length 3–6)::

    copy     copy the letters : s / repeat the letters : s        -> s
    reverse  reverse the letters : s / the letters backwards : s  -> s reversed
    shift    shift the letters : s / next letters of : s          -> each letter +1 (mod 26)
    shift2   shift the letters by two : s / shift by two : s      -> +2
    sort     sort the letters : s / please sort : s               -> sorted
    first    first letter of : s / what is the first letter : s   -> s[0]
    last     last letter of : s / what is the last letter : s     -> s[-1]
    count    count the letters : s / what is the count of : s     -> len(s) as digits
    add      add a and b / what is the sum of a plus b            -> a+b as digits
    capital  capital of Ci / what is the capital of Ci            -> KB1[Ci] (seeded permutation)
    color    color of Oi / what is the color of Oi                -> KB2[Oi] (seeded)

The targets ``last``, ``add`` and ``capital`` each have a near-twin (``first``, ``count``,
``color``: nearly the same wording, another rule). ``twin_answer`` applies the twin's rule to a
target example's argument (``last`` → the first letter; ``add a and b`` → the count of its two
operands, ``2``; ``capital of Ci`` → the colour of ``Oi``): a fine-tuned model that answers so
has learnt the wording, not the rule (the track's ``twin_confusion``).

Pool: each example's task is drawn from ``MIX``; exactly ``round(rate * n_task)`` examples of a
task get a corrupted response (``NOISE``: 20 % of copy and shift, 10 % of each target task):
random letters of the same length, another digit string, or another entity. Held-out sets
(targets, test, general) are disjoint from the pool and from each other as strings. For the tasks
with a small prompt space (``add``: 100 operand pairs; ``capital``/``color``: 32 entities) each
item's phrasing is split: the pool asks it in one phrasing and the held-out sets in the other, so
held-out items test the fact or the sum under the wording the pool did not use.

Task ids and noise flags are the hidden truth: they stay in ``World``; views never hold them, and
``make_world`` refuses to run inside a contestant (``LeakageError``).

World v2 (``version=2``, ``VOCAB_V2``): held-out sets that can resolve a difference, and
phrasings in which lexical matching no longer tells a target from its twin.

* 128 countries ``C0..C127`` and cities ``T0..T127``; ``color`` asks the colour of a *country*
  (``K0..K7``), so ``capital`` and its twin share the entity tokens; the objects ``O*`` are gone.
* ``add`` takes operands 0–19 (the numbers 10–19 are tokens of their own; sums are written in
  digits): 400 operand pairs.
* Each target and its twin have one phrasing of their own and one *shared* phrasing whose words
  are the same multiset, the rule given only by word order::

      first    letter of : s , first not last           last     letter of : s , last not first
      count    n1 and n2 [and n3 [and n4]] , count not sum -> the number of operands
      add      a and b , sum not count                   -> a+b
      color    Ci , color not capital -> KB2[Ci]        capital  Ci , capital not color -> KB1[Ci]

  (their own phrasings: ``first letter of : s``, ``last letter of : s``, ``count the letters :
  s``, ``add a and b``, ``color of Ci``, ``capital of Ci``). The twin rule on a target example:
  ``last`` → the first letter, ``add`` → ``2`` (the count of its operands), ``capital of Ci`` →
  the colour of ``Ci``.
* The pool holds each task in its exact share of ``MIX`` (largest remainder; 174 examples of
  each target in 4,000; 17 or 18 in 400), in a seeded order, so a budget below that share stays below it whatever
  the seed.
* Held-out sets of the finite tasks are drawn without replacement from the items' held-out
  phrasings, so ``capital`` has 128 − ``n_targets`` test items (120 with 8 targets) and ``add``
  392; ``min_test`` makes a smaller set an error.

``pretrain_corpus`` builds the pretraining corpus of the track's base model: the pools of worlds
with other seeds (other knowledge bases) restricted to the non-target tasks, clean, plus free
text over the vocabulary (see its docstring); it never holds a target task's example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

WORLD_VERSION = 1
SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>", ":")
PAD, BOS, SEP, EOS = 0, 1, 2, 3
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
DIGITS = tuple("0123456789")
KEYWORDS = (
    "copy", "repeat", "reverse", "backwards", "shift", "next", "sort", "please", "first", "last", "letter", "letters",
    "count", "add", "plus", "sum", "capital", "color", "of", "the", "what", "is", "by", "two", "and",
)
N_ENTITIES = 32
N_COLOURS = 8
COUNTRIES = tuple(f"C{i}" for i in range(N_ENTITIES))
CITIES = tuple(f"T{i}" for i in range(N_ENTITIES))
OBJECTS = tuple(f"O{i}" for i in range(N_ENTITIES))
COLOURS = tuple(f"K{i}" for i in range(N_COLOURS))
VOCAB: tuple[str, ...] = SPECIALS + LETTERS + DIGITS + KEYWORDS + COUNTRIES + CITIES + OBJECTS + COLOURS
TOK: dict[str, int] = {t: i for i, t in enumerate(VOCAB)}

TASKS = ("copy", "reverse", "shift", "shift2", "sort", "first", "last", "count", "add", "capital", "color")
#: relative pool weights (spec §2.3)
MIX: dict[str, float] = {"copy": 12, "reverse": 10, "shift": 3, "shift2": 4, "sort": 8, "first": 10, "last": 3, "count": 3, "add": 3, "capital": 3, "color": 10}
TARGETS = ("last", "add", "capital")
TWIN: dict[str, str] = {"shift": "shift2", "shift2": "shift", "first": "last", "last": "first", "count": "add", "add": "count", "capital": "color", "color": "capital"}
#: corrupted-response rate per task
NOISE: dict[str, float] = {"copy": 0.2, "shift": 0.2, "last": 0.1, "add": 0.1, "capital": 0.1}
PHRASINGS: dict[str, tuple[str, str]] = {
    "copy": ("copy the letters : {s}", "repeat the letters : {s}"),
    "reverse": ("reverse the letters : {s}", "the letters backwards : {s}"),
    "shift": ("shift the letters : {s}", "next letters of : {s}"),
    "shift2": ("shift the letters by two : {s}", "shift by two : {s}"),
    "sort": ("sort the letters : {s}", "please sort : {s}"),
    "first": ("first letter of : {s}", "what is the first letter : {s}"),
    "last": ("last letter of : {s}", "what is the last letter : {s}"),
    "count": ("count the letters : {s}", "what is the count of : {s}"),
    "add": ("add {a} and {b}", "what is the sum of {a} plus {b}"),
    "capital": ("capital of {e}", "what is the capital of {e}"),
    "color": ("color of {e}", "what is the color of {e}"),
}
#: tasks whose prompt space is small: the pool and the held-out sets use different phrasings per item
FINITE = ("add", "capital", "color")

# ---- world v2 (issue 36) ------------------------------------------------------------------------
WORLD_VERSIONS = (1, 2)
N_ENTITIES_V2 = 128
N_OPERANDS_V2 = 20
NUMBERS_V2 = tuple(str(i) for i in range(10, N_OPERANDS_V2))  # 10..19: tokens of their own
KEYWORDS_V2 = KEYWORDS + ("not", ",")
COUNTRIES_V2 = tuple(f"C{i}" for i in range(N_ENTITIES_V2))
CITIES_V2 = tuple(f"T{i}" for i in range(N_ENTITIES_V2))
VOCAB_V2: tuple[str, ...] = SPECIALS + LETTERS + DIGITS + NUMBERS_V2 + KEYWORDS_V2 + COUNTRIES_V2 + CITIES_V2 + COLOURS
TOK_V2: dict[str, int] = {t: i for i, t in enumerate(VOCAB_V2)}
PHRASINGS_V2: dict[str, tuple[str, str]] = {
    **{t: PHRASINGS[t] for t in ("copy", "reverse", "shift", "shift2", "sort")},
    "first": ("first letter of : {s}", "letter of : {s} , first not last"),
    "last": ("last letter of : {s}", "letter of : {s} , last not first"),
    "count": ("count the letters : {s}", "{n} , count not sum"),
    "add": ("add {a} and {b}", "{a} and {b} , sum not count"),
    "capital": ("capital of {e}", "{e} , capital not color"),
    "color": ("color of {e}", "{e} , color not capital"),
}
#: phrasing index that a target shares, word for word up to order, with its twin (v2)
SHARED_PHRASING = 1
#: words free text never uses: every target prompt of v2 holds one of them ("of", "and" or ","),
#: so no free-text sequence can contain a target task's prompt (``pretrain_corpus``)
FREE_TEXT_EXCLUDED = ("of", "and", ",")


def vocab(version: int = 1) -> tuple[str, ...]:
    """The word vocabulary of world ``version`` (ids are positions)."""
    _check_version(version)
    return VOCAB if version == 1 else VOCAB_V2


def phrasings(version: int = 1) -> dict[str, tuple[str, str]]:
    _check_version(version)
    return PHRASINGS if version == 1 else PHRASINGS_V2


def _check_version(version: int) -> None:
    if version not in WORLD_VERSIONS:
        raise WorldError(f"unknown instruction world_version {version!r}; versions: {', '.join(map(str, WORLD_VERSIONS))}")


class WorldError(ValueError):
    """Bad world settings; the message names the setting."""


def seed_of(*parts: object) -> int:
    """A stable 31-bit seed from ``parts`` (sha256 of their ``|``-joined text)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) % (2**31 - 1)


@dataclass(frozen=True)
class Example:
    prompt: tuple[str, ...]
    response: tuple[str, ...]
    task: str = ""
    noisy: bool = False
    #: the user's own (prompt, response) strings of a JSONL example, whitespace kept: what a
    #: Hugging Face tokenizer encodes (the word tuples serve the word-level vocabulary)
    raw: tuple[str, str] | None = None

    @property
    def text(self) -> str:
        """``"prompt ||| response"`` (what lexical methods read)."""
        return f"{' '.join(self.prompt)} ||| {' '.join(self.response)}"


@dataclass(frozen=True)
class Encoded:
    """Token ids and masks of a list of examples (numpy; the track turns them into tensors)."""

    ids: np.ndarray  # (N, T) int64, right-padded with <pad>
    response_mask: np.ndarray  # (N, T) bool: positions whose next token is a response token or <eos>
    prompt_mask: np.ndarray  # (N, T) bool: prompt tokens (no <bos>/<sep>/<pad>)
    lengths: np.ndarray  # (N,) tokens before padding
    texts: tuple[str, ...]


def encode(examples: Sequence[Example], ctx: int, vocab: Mapping[str, int] | None = None) -> Encoded:
    """``<bos> prompt <sep> response <eos>`` per example, right-padded to ``ctx`` tokens."""
    tok = TOK if vocab is None else vocab
    n = len(examples)
    ids = np.full((n, ctx), PAD, dtype=np.int64)
    resp = np.zeros((n, ctx), dtype=bool)
    prompt = np.zeros((n, ctx), dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    for i, ex in enumerate(examples):
        seq = [BOS, *(tok[t] for t in ex.prompt), SEP, *(tok[t] for t in ex.response), EOS]
        if len(seq) > ctx:
            raise WorldError(f"an example has {len(seq)} tokens but ctx is {ctx}; raise the profile setting ctx")
        ids[i, : len(seq)] = seq
        lengths[i] = len(seq)
        p = len(ex.prompt)
        prompt[i, 1 : 1 + p] = True
        resp[i, 1 + p : len(seq) - 1] = True  # <sep> .. last response token: their next token is the answer
    return Encoded(ids, resp, prompt, lengths, tuple(ex.text for ex in examples))


@dataclass
class World:
    """A generated world: the pool with its hidden truth, and the held-out sets per task."""

    pool: list[Example]
    targets: dict[str, list[Example]]  # target task -> the handful of target examples
    test: dict[str, list[Example]]  # target task -> held-out test examples
    general: dict[str, list[Example]]  # every task -> held-out examples
    kb_capital: dict[str, str]
    kb_color: dict[str, str]
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return int(self.settings.get("world_version", 1))  # type: ignore[call-overload]

    @property
    def pool_task(self) -> np.ndarray:
        return np.array([e.task for e in self.pool])

    @property
    def pool_noisy(self) -> np.ndarray:
        return np.array([e.noisy for e in self.pool], dtype=bool)

    def twin_answer(self, ex: Example) -> tuple[str, ...]:
        """The near-twin task's rule applied to the argument of target example ``ex``."""
        return twin_answer(ex, self.kb_color, self.version)


def _letters(rng: np.random.Generator) -> list[str]:
    return [LETTERS[i] for i in rng.integers(0, 26, int(rng.integers(3, 7)))]


def _shift(s: Sequence[str], k: int) -> list[str]:
    return [LETTERS[(LETTERS.index(c) + k) % 26] for c in s]


def answer(task: str, arg: Sequence[str] | tuple[int, int] | str, kb_capital: Mapping[str, str], kb_color: Mapping[str, str]) -> list[str]:
    """The correct response of ``task`` for its argument (letters, an operand pair, a list of
    operands (v2 ``count``) or an entity)."""
    if task == "copy":
        return list(arg)  # type: ignore[arg-type]
    if task == "reverse":
        return list(arg)[::-1]  # type: ignore[arg-type]
    if task == "shift":
        return _shift(arg, 1)  # type: ignore[arg-type]
    if task == "shift2":
        return _shift(arg, 2)  # type: ignore[arg-type]
    if task == "sort":
        return sorted(arg)  # type: ignore[arg-type]
    if task == "first":
        return [arg[0]]  # type: ignore[index]
    if task == "last":
        return [arg[-1]]  # type: ignore[index]
    if task == "count":
        return list(str(len(arg)))  # type: ignore[arg-type]
    if task == "add":
        a, b = arg  # type: ignore[misc]
        return list(str(int(a) + int(b)))
    if task == "capital":
        return [kb_capital[arg]]  # type: ignore[index]
    if task == "color":
        return [kb_color[arg]]  # type: ignore[index]
    raise WorldError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")


def _prompt(task: str, phrasing: int, arg: object, version: int = 1) -> tuple[str, ...]:
    tpl = phrasings(version)[task][phrasing]
    if task == "add":
        a, b = arg  # type: ignore[misc]
        text = tpl.format(a=a, b=b)
    elif task in ("capital", "color"):
        text = tpl.format(e=arg)
    elif "{n}" in tpl:  # v2 count, shared phrasing: a list of operands
        text = tpl.format(n=" and ".join(arg))  # type: ignore[arg-type]
    else:
        text = tpl.format(s=" ".join(arg))  # type: ignore[arg-type]
    return tuple(text.split())


def _corrupt(task: str, resp: list[str], rng: np.random.Generator, version: int = 1) -> list[str]:
    """A wrong response of the same shape (never equal to the correct one)."""
    n_cities = N_ENTITIES if version == 1 else N_ENTITIES_V2
    cities = CITIES if version == 1 else CITIES_V2
    for _ in range(100):
        if task in ("capital",):
            out = [cities[int(rng.integers(0, n_cities))]]
        elif task == "color":
            out = [COLOURS[int(rng.integers(0, N_COLOURS))]]
        elif all(t in DIGITS for t in resp):
            out = resp[::-1] if len(resp) > 1 and resp[::-1] != resp else [DIGITS[int(rng.integers(0, 10))] for _ in resp]
        else:
            out = [LETTERS[int(rng.integers(0, 26))] for _ in resp]
        if out != resp:
            return out
    raise AssertionError("could not corrupt a response")  # pragma: no cover


def parse_arg(task: str, prompt: Sequence[str]) -> object:
    """The argument of a ``task`` prompt of either world version: the operand pair (``add``), the
    entity (``capital``, ``color``), the operand list (v2 ``count`` in its shared phrasing) or the
    letters (after ``:``, up to a ``,``)."""
    p = tuple(prompt)
    if task == "add":
        nums = [t for t in p if t.isdigit()]
        return (int(nums[0]), int(nums[1]))
    if task in ("capital", "color"):
        return next(t for t in p if t[:1] in ("C", "O") and t[1:].isdigit())
    if ":" not in p:  # v2 count, shared phrasing
        return [t for t in p[: p.index(",")] if t.isdigit()]
    start = p.index(":") + 1
    return list(p[start : p.index(",")] if "," in p else p[start:])


def twin_answer(ex: Example, kb_color: Mapping[str, str], version: int = 1) -> tuple[str, ...]:
    """The near-twin's rule on target example ``ex``'s argument (see the module docstring)."""
    p = ex.prompt
    if version != 1:
        task = ex.task
        if task in ("first", "last"):
            return tuple(answer(TWIN[task], parse_arg(task, p), {}, kb_color))  # type: ignore[arg-type]
        if task == "add":  # the count rule on the operand list
            return ("2",)
        if task == "capital":  # the colour of the same country
            return (kb_color[parse_arg(task, p)],)  # type: ignore[index]
        raise WorldError(f"no twin answer for prompt {' '.join(p)!r}")
    if ":" in p:  # letter tasks: the argument follows ':'
        s = list(p[p.index(":") + 1 :])
        task = ex.task or ("last" if "last" in p else "first")
        return tuple(answer(TWIN.get(task, task), s, {}, kb_color))
    if p[-1] in COUNTRIES:  # capital of Ci -> color of Oi
        return (kb_color[OBJECTS[COUNTRIES.index(p[-1])]],)
    if p[-1] in DIGITS:  # add a and b -> count of the operands
        return ("2",)
    raise WorldError(f"no twin answer for prompt {' '.join(p)!r}")


def make_world(
    seed: int,
    *,
    pool_size: int = 4000,
    n_targets: int = 8,
    n_test: int = 300,
    n_general: int = 50,
    mix: Mapping[str, float] | None = None,
    noise: Mapping[str, float] | None = None,
    targets: Sequence[str] = TARGETS,
    ctx: int = 24,
    version: int = 1,
    min_test: int = 0,
    split_phrasings: bool = True,
    kb_seed: int | None = None,
) -> World:
    """Generate the world ``version`` for ``seed`` (the track derives it from profile, dataset and
    repeat). ``min_test``: fewer held-out test items for a target is an error (v2 profiles ask 120).
    ``split_phrasings = False`` (v2 only; the pretraining corpus): the pool asks every item of the
    small-prompt-space tasks in either phrasing, so a model sees that both ask the same fact.
    ``kb_seed`` (v2 only): draw the knowledge bases from this seed instead of the world's, so
    several worlds (the pretraining corpus's) share one set of facts.

    Guarded: a contestant that calls it while it is evaluated fails its cell (``LeakageError``)."""
    from ...data import _check_not_contestant

    _check_not_contestant("generate the instruction world")
    _check_version(version)
    mix = dict(MIX if mix is None else mix)
    noise = dict(NOISE if noise is None else noise)
    unknown = sorted((set(mix) | set(noise) | set(targets)) - set(TASKS))
    if unknown:
        raise WorldError(f"unknown task(s) {', '.join(unknown)} in the world settings; tasks: {', '.join(TASKS)}")
    if pool_size < 1 or n_targets < 1 or n_test < 1:
        raise WorldError("pool_size, n_targets and n_test must be at least 1")
    if version == 1:
        return _make_world_v1(seed, pool_size, n_targets, n_test, n_general, mix, noise, targets, ctx)
    return _make_world_v2(seed, pool_size, n_targets, n_test, n_general, mix, noise, targets, ctx, min_test, split_phrasings, kb_seed)


def _make_world_v1(seed: int, pool_size: int, n_targets: int, n_test: int, n_general: int, mix: dict, noise: dict, targets: Sequence[str], ctx: int) -> World:
    """World v1, exactly as ``instruction/quick@1`` generated it (do not change: published)."""
    rng = np.random.default_rng(seed_of("instruction-world", 1, seed))
    kb_capital = dict(zip(COUNTRIES, (CITIES[i] for i in rng.permutation(N_ENTITIES))))
    kb_color = {o: COLOURS[int(rng.integers(0, N_COLOURS))] for o in OBJECTS}
    # the pool-side phrasing of every item of the small-prompt-space tasks
    pool_side = {
        "add": {(a, b): int(rng.integers(0, 2)) for a in range(10) for b in range(10)},
        "capital": {e: int(rng.integers(0, 2)) for e in COUNTRIES},
        "color": {e: int(rng.integers(0, 2)) for e in OBJECTS},
    }

    def draw(task: str, held_out: bool) -> Example:
        if task == "add":
            arg: object = (int(rng.integers(0, 10)), int(rng.integers(0, 10)))
            ph = pool_side["add"][arg] ^ int(held_out)  # type: ignore[index]
        elif task == "capital":
            arg = COUNTRIES[int(rng.integers(0, N_ENTITIES))]
            ph = pool_side["capital"][arg] ^ int(held_out)  # type: ignore[index]
        elif task == "color":
            arg = OBJECTS[int(rng.integers(0, N_ENTITIES))]
            ph = pool_side["color"][arg] ^ int(held_out)  # type: ignore[index]
        else:
            arg = _letters(rng)
            ph = int(rng.integers(0, 2))
        resp = answer(task, arg, kb_capital, kb_color)  # type: ignore[arg-type]
        return Example(_prompt(task, ph, arg), tuple(resp), task, False)

    pool = _draw_pool(rng, draw, pool_size, mix, noise, 1)
    taken = {e.prompt for e in pool}

    def held(task: str, n: int) -> list[Example]:
        out: list[Example] = []
        for _ in range(200 * n):
            if len(out) == n:
                break
            e = draw(task, True)
            if e.prompt not in taken:
                taken.add(e.prompt)
                out.append(e)
        return out

    return _assemble(pool, held, kb_capital, kb_color, targets, n_targets, n_test, n_general, mix, noise, ctx, 1, 0, pool_size)


def _draw_pool(rng: np.random.Generator, draw, pool_size: int, mix: dict, noise: dict, version: int) -> list[Example]:
    names = [t for t in TASKS if mix.get(t, 0) > 0]
    w = np.array([mix[t] for t in names], dtype=float)
    if version == 1:
        task_of = rng.choice(len(names), size=pool_size, p=w / w.sum())
    else:  # v2: exact shares (largest remainder), in a seeded order: a target's share never depends on the draw
        share = w / w.sum() * pool_size
        quota = np.floor(share).astype(int)
        quota[np.argsort(-(share - quota), kind="stable")[: pool_size - int(quota.sum())]] += 1
        task_of = rng.permutation(np.repeat(np.arange(len(names)), quota))
    pool = [draw(names[k], False) for k in task_of]
    for task, rate in noise.items():
        idx = [i for i, e in enumerate(pool) if e.task == task]
        k = int(round(rate * len(idx)))
        for i in sorted(rng.choice(idx, size=k, replace=False).tolist()) if k else []:
            e = pool[i]
            pool[i] = Example(e.prompt, tuple(_corrupt(task, list(e.response), rng, version)), task, True)
    return pool


def _assemble(pool, held, kb_capital, kb_color, targets, n_targets, n_test, n_general, mix, noise, ctx, version, min_test, pool_size) -> World:
    tgt = {t: held(t, n_targets) for t in targets}
    for t, ex in tgt.items():
        if len(ex) < n_targets:
            raise WorldError(f"task {t!r} has only {len(ex)} held-out prompts for {n_targets} targets; lower n_targets")
    test = {t: held(t, n_test) for t in targets}
    short = {t: len(v) for t, v in test.items() if len(v) < min_test}
    if short:
        raise WorldError(f"held-out test sets smaller than min_test {min_test}: {', '.join(f'{t} {k}' for t, k in short.items())}; lower min_test or n_targets")
    general = {t: held(t, n_general) for t in TASKS}
    for t in targets:  # small prompt spaces may leave a target task's general set empty: use its test set
        if not general[t]:
            general[t] = list(test[t][:n_general])
    settings = {"pool_size": pool_size, "n_targets": n_targets, "n_test": n_test, "n_general": n_general, "mix": mix, "noise": noise, "ctx": ctx, "world_version": version}
    if version != 1:
        settings["min_test"] = min_test
    return World(pool, tgt, test, general, kb_capital, kb_color, settings)


def _make_world_v2(seed: int, pool_size: int, n_targets: int, n_test: int, n_general: int, mix: dict, noise: dict, targets: Sequence[str], ctx: int, min_test: int,
                   split: bool = True, kb_seed: int | None = None) -> World:
    """World v2 (see the module docstring)."""
    rng = np.random.default_rng(seed_of("instruction-world", 2, seed))
    kb_rng = rng if kb_seed is None else np.random.default_rng(seed_of("instruction-kb", 2, kb_seed))
    kb_capital = dict(zip(COUNTRIES_V2, (CITIES_V2[i] for i in kb_rng.permutation(N_ENTITIES_V2))))
    kb_color = dict(zip(COUNTRIES_V2, (COLOURS[int(i)] for i in kb_rng.integers(0, N_COLOURS, N_ENTITIES_V2))))
    pairs = [(a, b) for a in range(N_OPERANDS_V2) for b in range(N_OPERANDS_V2)]
    items: dict[str, list] = {"add": pairs, "capital": list(COUNTRIES_V2), "color": list(COUNTRIES_V2)}
    # the pool-side phrasing of every item of the small-prompt-space tasks; the held-out sets ask the other
    pool_side = {t: dict(zip(v, (int(x) for x in rng.integers(0, 2, len(v))))) for t, v in items.items()}

    def make(task: str, ph: int, arg: object) -> Example:
        return Example(_prompt(task, ph, arg, 2), tuple(answer(task, arg, kb_capital, kb_color)), task, False)  # type: ignore[arg-type]

    def draw(task: str, held_out: bool) -> Example:
        if task in items:
            arg: object = items[task][int(rng.integers(0, len(items[task])))]
            ph = pool_side[task][arg] ^ int(held_out) if split or held_out else int(rng.integers(0, 2))
            return make(task, ph, arg)
        ph = int(rng.integers(0, 2))
        if task == "count" and ph == SHARED_PHRASING:
            arg = [str(int(x)) for x in rng.integers(0, N_OPERANDS_V2, int(rng.integers(2, 5)))]
        else:
            arg = _letters(rng)
        return make(task, ph, arg)

    pool = _draw_pool(rng, draw, pool_size, mix, noise, 2)
    taken = {e.prompt for e in pool}

    def held(task: str, n: int) -> list[Example]:
        out: list[Example] = []
        if n <= 0:
            return out
        if task in items:  # without replacement over the items' held-out phrasings
            for k in rng.permutation(len(items[task])):
                arg = items[task][int(k)]
                e = make(task, pool_side[task][arg] ^ 1, arg)
                if e.prompt not in taken:
                    taken.add(e.prompt)
                    out.append(e)
                    if len(out) == n:
                        break
            return out
        for _ in range(200 * n):
            e = draw(task, True)
            if e.prompt not in taken:
                taken.add(e.prompt)
                out.append(e)
                if len(out) == n:
                    break
        return out

    return _assemble(pool, held, kb_capital, kb_color, targets, n_targets, n_test, n_general, mix, noise, ctx, 2, min_test, pool_size)


def check_answers(world: World) -> list[str]:
    """Every clean example's response recomputed from its prompt; returns the mismatches (empty: right)."""
    bad = []
    for e in world.pool + [x for v in (*world.targets.values(), *world.test.values(), *world.general.values()) for x in v]:
        want = tuple(answer(e.task, parse_arg(e.task, e.prompt), world.kb_capital, world.kb_color))  # type: ignore[arg-type]
        if (want == e.response) == e.noisy:
            bad.append(f"{e.task}: {e.text} (noisy={e.noisy})")
    return bad


# ---- the pretraining corpus of the base model (issue 36) -----------------------------------------

FREE = "free"  # the task label of a free-text sequence


def pretrain_corpus(seed: int, *, version: int = 2, n_worlds: int = 4, pool_size: int = 6000, free_fraction: float = 0.25,
                    exclude: Sequence[str] = TARGETS, min_len: int = 2, max_len: int = 6) -> list[Example]:
    """The pretraining corpus of the track's base model for ``seed``: the pools of ``n_worlds``
    worlds of ``version`` with seeds of their own, sharing one knowledge base of their own (so
    ``color`` maps the countries to other colours than the evaluated world does, consistently
    across the corpus), restricted to the tasks not in ``exclude`` (the targets), generated
    clean (no corrupted response) and asking each fact in either phrasing, plus free text.

    Free text (task ``FREE``, empty response, ``free_fraction`` of the corpus): a run of
    ``min_len``–``max_len`` words drawn uniformly from the vocabulary and then repeated (``w1 ..
    wk w1 .. wk``): every word, target keywords and entities included, gets a trained embedding,
    and the model learns to attend back and copy. It never uses ``FREE_TEXT_EXCLUDED`` (``of``,
    ``and``, ``,``), one of which is in every target prompt of v2, so no free-text sequence
    contains a target task's prompt. No target-task example and no held-out item is in the
    corpus (``tests/test_instruction_pretrain.py`` checks it against the evaluated worlds)."""
    from ...data import _check_not_contestant

    _check_not_contestant("generate the instruction pretraining corpus")
    if version == 1:
        raise WorldError("the pretraining corpus is defined for world_version 2 (v1 profiles train from a random base)")
    _check_version(version)
    if n_worlds < 1 or pool_size < 1 or not 0 <= free_fraction < 1:
        raise WorldError("pretrain: n_worlds and pool_size must be at least 1 and free_fraction in [0, 1)")
    mix = {t: w for t, w in MIX.items() if t not in set(exclude)}
    out: list[Example] = []
    for k in range(n_worlds):
        w = make_world(seed_of("instruction-pretrain-world", version, seed, k), pool_size=pool_size, n_targets=1, n_test=1, n_general=0,
                       mix=mix, noise={}, targets=(), version=version, split_phrasings=False,
                       kb_seed=seed_of("instruction-pretrain-kb", version, seed))
        out.extend(w.pool)
    rng = np.random.default_rng(seed_of("instruction-pretrain-free", version, seed))
    words = [t for t in vocab(version)[4:] if t not in FREE_TEXT_EXCLUDED]
    n_free = int(round(free_fraction / (1 - free_fraction) * len(out)))
    for _ in range(n_free):
        run = [words[int(i)] for i in rng.integers(0, len(words), int(rng.integers(min_len, max_len + 1)))]
        out.append(Example(tuple(run + run), (), FREE, False))
    order = rng.permutation(len(out))
    return [out[int(i)] for i in order]


def encode_lm(examples: Sequence[Example], ctx: int, vocab: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, ctx), loss mask (N, ctx)) for language-model pretraining: a task example is
    ``<bos> prompt <sep> response <eos>``, free text ``<bos> words <eos>``; the loss covers every
    position whose next token is part of the sequence (the whole text, not only the response)."""
    n = len(examples)
    ids = np.full((n, ctx), PAD, dtype=np.int64)
    mask = np.zeros((n, ctx), dtype=bool)
    for i, ex in enumerate(examples):
        body = [vocab[t] for t in ex.prompt]
        seq = [BOS, *body, EOS] if ex.task == FREE else [BOS, *body, SEP, *(vocab[t] for t in ex.response), EOS]
        if len(seq) > ctx:
            raise WorldError(f"a pretraining sequence has {len(seq)} tokens but ctx is {ctx}; raise the profile setting ctx")
        ids[i, : len(seq)] = seq
        mask[i, : len(seq) - 1] = True
    return ids, mask
