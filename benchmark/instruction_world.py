"""The instruction world of the ``instruction`` track: generated prompt/response examples with
known answers (spec: shared/reference/tracks-phase2.md §2.3; ``WORLD_VERSION`` = 1).

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
    def pool_task(self) -> np.ndarray:
        return np.array([e.task for e in self.pool])

    @property
    def pool_noisy(self) -> np.ndarray:
        return np.array([e.noisy for e in self.pool], dtype=bool)

    def twin_answer(self, ex: Example) -> tuple[str, ...]:
        """The near-twin task's rule applied to the argument of target example ``ex``."""
        return twin_answer(ex, self.kb_color)


def _letters(rng: np.random.Generator) -> list[str]:
    return [LETTERS[i] for i in rng.integers(0, 26, int(rng.integers(3, 7)))]


def _shift(s: Sequence[str], k: int) -> list[str]:
    return [LETTERS[(LETTERS.index(c) + k) % 26] for c in s]


def answer(task: str, arg: Sequence[str] | tuple[int, int] | str, kb_capital: Mapping[str, str], kb_color: Mapping[str, str]) -> list[str]:
    """The correct response of ``task`` for its argument (letters, an operand pair or an entity)."""
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


def _prompt(task: str, phrasing: int, arg: object) -> tuple[str, ...]:
    tpl = PHRASINGS[task][phrasing]
    if task == "add":
        a, b = arg  # type: ignore[misc]
        text = tpl.format(a=a, b=b)
    elif task in ("capital", "color"):
        text = tpl.format(e=arg)
    else:
        text = tpl.format(s=" ".join(arg))  # type: ignore[arg-type]
    return tuple(text.split())


def _corrupt(task: str, resp: list[str], rng: np.random.Generator) -> list[str]:
    """A wrong response of the same shape (never equal to the correct one)."""
    for _ in range(100):
        if task in ("capital",):
            out = [CITIES[int(rng.integers(0, N_ENTITIES))]]
        elif task == "color":
            out = [COLOURS[int(rng.integers(0, N_COLOURS))]]
        elif all(t in DIGITS for t in resp):
            out = resp[::-1] if len(resp) > 1 and resp[::-1] != resp else [DIGITS[int(rng.integers(0, 10))] for _ in resp]
        else:
            out = [LETTERS[int(rng.integers(0, 26))] for _ in resp]
        if out != resp:
            return out
    raise AssertionError("could not corrupt a response")  # pragma: no cover


def twin_answer(ex: Example, kb_color: Mapping[str, str]) -> tuple[str, ...]:
    """The near-twin's rule on target example ``ex``'s argument (see the module docstring)."""
    p = ex.prompt
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
) -> World:
    """Generate the world for ``seed`` (the track derives it from profile, dataset and repeat).

    Guarded: a contestant that calls it while it is evaluated fails its cell (``LeakageError``)."""
    from .data import _check_not_contestant

    _check_not_contestant("generate the instruction world")
    mix = dict(MIX if mix is None else mix)
    noise = dict(NOISE if noise is None else noise)
    unknown = sorted((set(mix) | set(noise) | set(targets)) - set(TASKS))
    if unknown:
        raise WorldError(f"unknown task(s) {', '.join(unknown)} in the world settings; tasks: {', '.join(TASKS)}")
    if pool_size < 1 or n_targets < 1 or n_test < 1:
        raise WorldError("pool_size, n_targets and n_test must be at least 1")
    rng = np.random.default_rng(seed_of("instruction-world", WORLD_VERSION, seed))
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

    names = [t for t in TASKS if mix.get(t, 0) > 0]
    w = np.array([mix[t] for t in names], dtype=float)
    task_of = rng.choice(len(names), size=pool_size, p=w / w.sum())
    pool = [draw(names[k], False) for k in task_of]
    for task, rate in noise.items():
        idx = [i for i, e in enumerate(pool) if e.task == task]
        k = int(round(rate * len(idx)))
        for i in sorted(rng.choice(idx, size=k, replace=False).tolist()) if k else []:
            e = pool[i]
            pool[i] = Example(e.prompt, tuple(_corrupt(task, list(e.response), rng)), task, True)
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

    tgt = {t: held(t, n_targets) for t in targets}
    for t, ex in tgt.items():
        if len(ex) < n_targets:
            raise WorldError(f"task {t!r} has only {len(ex)} held-out prompts for {n_targets} targets; lower n_targets")
    test = {t: held(t, n_test) for t in targets}
    general = {t: held(t, n_general) for t in TASKS}
    for t in targets:  # small prompt spaces may leave a target task's general set empty: use its test set
        if not general[t]:
            general[t] = list(test[t][:n_general])
    settings = {"pool_size": pool_size, "n_targets": n_targets, "n_test": n_test, "n_general": n_general, "mix": mix, "noise": noise, "ctx": ctx, "world_version": WORLD_VERSION}
    return World(pool, tgt, test, general, kb_capital, kb_color, settings)


def check_answers(world: World) -> list[str]:
    """Every clean example's response recomputed from its prompt; returns the mismatches (empty: right)."""
    bad = []
    for e in world.pool + [x for v in (*world.targets.values(), *world.test.values(), *world.general.values()) for x in v]:
        p = e.prompt
        if e.task == "add":
            nums = [t for t in p if t in DIGITS]
            arg: object = (int(nums[0]), int(nums[1]))
        elif e.task in ("capital", "color"):
            arg = p[-1]
        else:
            arg = list(p[p.index(":") + 1 :])
        want = tuple(answer(e.task, arg, world.kb_capital, world.kb_color))  # type: ignore[arg-type]
        if (want == e.response) == e.noisy:
            bad.append(f"{e.task}: {e.text} (noisy={e.noisy})")
    return bad
