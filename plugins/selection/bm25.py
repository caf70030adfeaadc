"""``bm25``: lexical Okapi BM25 of each pool text against the target prompts (no model call).

Documents are the pool's ``"prompt ||| response"`` texts split on whitespace; the query is the
set of distinct tokens of the target examples' prompts (decoded with ``view.vocab``; with
``query_tf = true`` every occurrence counts). For query term q, document D of length |D|, average
length avgdl, N documents and n(q) documents containing q::

    IDF(q) = ln((N - n(q) + 0.5) / (n(q) + 0.5) + 1)
    BM25(D) = sum_q IDF(q) * f(q, D) (k1 + 1) / (f(q, D) + k1 (1 - b + b |D| / avgdl))

Keep the top budget.

Citation: S. Robertson, H. Zaragoza. "The Probabilistic Relevance Framework: BM25 and Beyond."
Foundations and Trends in Information Retrieval 3(4), 2009.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod


def bm25_scores(docs: list[list[str]], query: dict[str, int], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    N = len(docs)
    lens = np.array([len(d) for d in docs], dtype=float)
    avg = lens.mean() if N else 1.0
    tfs = [Counter(d) for d in docs]
    out = np.zeros(N)
    for q, qtf in query.items():
        f = np.array([tf.get(q, 0) for tf in tfs], dtype=float)
        nq = float((f > 0).sum())
        idf = np.log((N - nq + 0.5) / (nq + 0.5) + 1.0)
        out += qtf * idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lens / avg))
    return out


class BM25(SelectionMethod):
    name = "bm25"
    version = "1"
    summary = "Lexical Okapi BM25 of each pool text against the target prompts."
    citation = "Robertson, Zaragoza. The Probabilistic Relevance Framework: BM25 and Beyond. 2009."
    modalities = frozenset({"text"})
    params = {"k1": 1.5, "b": 0.75, "query_tf": False}
    param_specs = {
        "k1": Param(float, min=0, help="term-frequency saturation"),
        "b": Param(float, min=0, max=1, help="document-length normalisation"),
        "query_tf": Param(bool, help="weigh query terms by their count in the target set"),
    }

    def select(self, view):
        p = self.params
        docs = [[w for w in t.split() if w != "|||"] for t in view.texts]
        words: Counter[str] = Counter()
        ids, pm = view.target_ids, view.target_prompt_mask
        for i in range(int(ids.shape[0])):
            for t in ids[i][pm[i]].tolist():
                words[str(view.vocab[t]).strip()] += 1
        query = dict(words) if p["query_tf"] else {w: 1 for w in words}
        S = bm25_scores(docs, query, float(p["k1"]), float(p["b"]))
        return Selection(np.sort(np.argsort(-S, kind="stable")[: view.budget]), scores=S)


@hookimpl
def register_methods(register):
    register(BM25())
