"""Paper links of the board: a method's citation -> title, venue, year and an arXiv/DOI address.

A citation names its paper in free text. The board links a paper only to where it lives: an
arXiv id, a DOI or a URL the citation itself gives, else one of the known papers below (matched
by a title's words in the citation), else nothing: never a search-engine query. A method that
cites no paper (internal baselines and bounds such as ``reactive`` or ``oracle``, whose
"citation" points at a design note) gets no paper link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRef:
    title: str
    venue: str
    year: int
    url: str

    def label(self) -> str:
        return f"{self.title} ({self.venue} {self.year})" if self.venue else f"{self.title} ({self.year})"


#: title -> (venue, year, address): papers the built-in methods cite without an id in the text
KNOWN: dict[str, tuple[str, int, str]] = {
    "Identifying Mislabeled Data using the Area Under the Margin Ranking": ("NeurIPS", 2020, "https://arxiv.org/abs/2001.10528"),
    "Enhanced Membership Inference Attacks against Machine Learning Models": ("CCS", 2022, "https://arxiv.org/abs/2111.09679"),
    "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks": ("ICML", 2020, "https://arxiv.org/abs/2003.01690"),
    "The Probabilistic Relevance Framework: BM25 and Beyond": ("Foundations and Trends in IR", 2009, "https://doi.org/10.1561/1500000019"),
    "Coverage-centric Coreset Selection for High Pruning Rates": ("ICLR", 2023, "https://arxiv.org/abs/2210.15809"),
    "Active Learning by Acquiring Contrastive Examples": ("EMNLP", 2021, "https://arxiv.org/abs/2109.03764"),
    "Confident Learning: Estimating Uncertainty in Dataset Labels": ("JAIR", 2021, "https://arxiv.org/abs/1911.00068"),
    "Contextual Diversity for Active Learning": ("ECCV", 2020, "https://arxiv.org/abs/2008.05723"),
    "Coresets for Data-efficient Training of Machine Learning Models": ("ICML", 2020, "https://arxiv.org/abs/1906.01827"),
    "Can Decentralized Algorithms Outperform Centralized Algorithms?": ("NeurIPS", 2017, "https://arxiv.org/abs/1705.09056"),
    "Deep Learning with Differential Privacy": ("CCS", 2016, "https://arxiv.org/abs/1607.00133"),
    "Adversarial Active Learning for Deep Networks: a Margin Based Approach": ("arXiv", 2018, "https://arxiv.org/abs/1802.09841"),
    "Explaining and Harnessing Adversarial Examples": ("ICLR", 2015, "https://arxiv.org/abs/1412.6572"),
    "Submodular Combinatorial Information Measures with Applications in Machine Learning": ("ALT", 2021, "https://arxiv.org/abs/2006.15412"),
    "GLISTER: Generalization based Data Subset Selection for Efficient and Robust Learning": ("AAAI", 2021, "https://arxiv.org/abs/2012.10630"),
    "GRAD-MATCH: Gradient Matching based Data Subset Selection for Efficient Deep Model Training": ("ICML", 2021, "https://arxiv.org/abs/2103.00123"),
    "Herding Dynamical Weights to Learn": ("ICML", 2009, "https://doi.org/10.1145/1553374.1553517"),
    "Active Learning for Convolutional Neural Networks: A Core-Set Approach": ("ICLR", 2018, "https://arxiv.org/abs/1708.00489"),
    "LESS: Selecting Influential Data for Targeted Instruction Tuning": ("ICML", 2024, "https://arxiv.org/abs/2402.04333"),
    "Membership Inference Attacks From First Principles": ("IEEE S&P", 2022, "https://arxiv.org/abs/2112.03570"),
    "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting": ("CSF", 2018, "https://arxiv.org/abs/1709.01604"),
    "Systematic Evaluation of Privacy Risks of Machine Learning Models": ("USENIX Security", 2021, "https://arxiv.org/abs/2003.10595"),
    "Towards Deep Learning Models Resistant to Adversarial Attacks": ("ICLR", 2018, "https://arxiv.org/abs/1706.06083"),
    "Quasi-Global Momentum: Accelerating Decentralized Deep Learning on Heterogeneous Data": ("ICML", 2021, "https://arxiv.org/abs/2102.04761"),
    "DeepCore: A Comprehensive Library for Coreset Selection in Deep Learning": ("DEXA", 2022, "https://arxiv.org/abs/2204.08499"),
    "White-box vs Black-box: Bayes Optimal Strategies for Membership Inference": ("ICML", 2019, "https://arxiv.org/abs/1908.11229"),
    "Theoretically Principled Trade-off between Robustness and Accuracy": ("ICML", 2019, "https://arxiv.org/abs/1901.08573"),
    "On the Importance of Difficulty Calibration in Membership Inference Attacks": ("ICLR", 2022, "https://arxiv.org/abs/2111.08440"),
    "Moderate Coreset: A Universal Method of Data Selection for Real-world Data-efficient Deep Learning": ("ICLR", 2023, ""),
    "Homogenizing Non-IID Datasets via In-Distribution Knowledge Distillation for Decentralized Learning": ("TMLR", 2024, "https://arxiv.org/abs/2304.04326"),
    "Advancing Compressed Video Action Recognition through Progressive Knowledge Distillation": ("arXiv", 2024, "https://arxiv.org/abs/2407.02713"),
    "The Easy Path to Robustness: Coreset Selection using Sample Hardness": ("arXiv", 2025, "https://arxiv.org/abs/2510.11018"),
    "Finding the Muses: Identifying Coresets through Loss Trajectories": ("arXiv", 2025, "https://arxiv.org/abs/2503.09721"),
    "Coresets from Trajectories: Selecting Data via Correlation of Loss Differences": ("TMLR", 2025, "https://arxiv.org/abs/2508.20230"),
    "TRIM: Token-wise Attention-Derived Saliency for Data-Efficient Instruction Tuning": ("arXiv", 2025, "https://arxiv.org/abs/2510.07118"),
    "Curvature Clues: Decoding Deep Learning Privacy with Input Loss Curvature": ("NeurIPS", 2024, "https://arxiv.org/abs/2407.02747"),
    "Memorization Through the Lens of Curvature of Loss Function Around Samples": ("ICML", 2024, "https://arxiv.org/abs/2307.05831"),
    "Intelligent Pooling: Proactive Resource Provisioning in Large-scale Cloud Service": ("PVLDB 17(7)", 2024, "https://arxiv.org/abs/2411.11326"),
    "Verifix: Post-Training Correction to Improve Label Noise Robustness with Verified Samples": ("arXiv", 2024, "https://arxiv.org/abs/2403.08618"),
    "Distribution Density, Tails, and Outliers in Machine Learning: Metrics and Applications": ("arXiv", 2019, "https://arxiv.org/abs/1910.13427"),
    "Deep Learning on a Data Diet: Finding Important Examples Early in Training": ("NeurIPS", 2021, "https://arxiv.org/abs/2107.07075"),
    "An Empirical Study of Example Forgetting during Deep Neural Network Learning": ("ICLR", 2019, "https://arxiv.org/abs/1812.05159"),
    "Selection via Proxy: Efficient Data Selection for Deep Learning": ("ICLR", 2020, "https://arxiv.org/abs/1906.11829"),
    "Spanning Training Progress: Temporal Dual-Depth Scoring (TDDS) for Enhanced Dataset Pruning": ("CVPR", 2024, "https://arxiv.org/abs/2311.13613"),
    "D2 Pruning: Message Passing for Balancing Diversity and Difficulty in Data Pruning": ("ICLR", 2024, "https://arxiv.org/abs/2310.07931"),
}
#: a short name a citation may use instead of the title -> the title in ``KNOWN``
ALIASES: dict[str, str] = {
    "Intelligent Pooling": "Intelligent Pooling: Proactive Resource Provisioning in Large-scale Cloud Service",
    "LESS (ICML 2024)": "LESS: Selecting Influential Data for Targeted Instruction Tuning",
    "Verifix": "Verifix: Post-Training Correction to Improve Label Noise Robustness with Verified Samples",
}
_BY_URL = {url: title for title, (_v, _y, url) in KNOWN.items() if url}

_VENUE = re.compile(
    r"\b(NeurIPS|ICML|ICLR|CVPR|ECCV|ICCV|AAAI|EMNLP|ACL|TMLR|JAIR|PVLDB|CCS|USENIX Security|IEEE S&P|CSF|ALT|DEXA|KDD|arXiv)\b"
)


def _norm(text: str) -> str:
    return " ".join("".join(ch.lower() if ch.isalnum() else " " for ch in text).split())


def _address(text: str) -> str:
    """The arXiv/DOI/URL address a citation gives itself ("" when none)."""
    m = re.search(r"https?://\S+[^\s.,;)]", text)
    if m:
        return m.group(0)
    m = re.search(r"arXiv[:\s]*(\d{4}\.\d{4,5})", text, re.I)
    if m:
        return f"https://arxiv.org/abs/{m.group(1)}"
    m = re.search(r"\b(10\.\d{4,9}/[^\s,;]+[^\s.,;)])", text)
    if m:
        return f"https://doi.org/{m.group(1)}"
    return ""


def paper_of(citation: str) -> PaperRef | None:
    """The paper a citation names, with its title, venue, year and address; None when the text
    names no paper the board can point at (no id, no known title)."""
    text = " ".join(str(citation or "").split())
    if not text:
        return None
    flat = _norm(text)
    url = _address(text)
    hit = _BY_URL.get(url) or next((t for t in KNOWN if _norm(t) in flat), None)
    hit = hit or next((t for a, t in ALIASES.items() if _norm(a) in flat), None)
    if hit is not None:
        venue, year, known_url = KNOWN[hit]
        return PaperRef(hit, venue, year, url or known_url)
    if not url:
        return None
    # "Authors. Title. Venue Year." or "Authors, Title, Venue Year": the longest clause that
    # is neither the author list nor the venue
    parts = [p.strip(" .,") for p in re.split(r"\.\s+|,\s+(?=[A-Z])", text) if p.strip(" .,")]
    body = [p for p in parts[1:] if not _VENUE.search(p) and not re.search(r"\d{4}\.\d{4,5}", p)] or parts
    title = max(body, key=len)
    venue_m = _VENUE.search(text)
    year_m = re.findall(r"\b(19\d\d|20\d\d)\b", re.sub(r"\d{4}\.\d{4,5}", "", text))
    return PaperRef(title, venue_m.group(1) if venue_m else "", int(year_m[-1]) if year_m else 0, url)


def paper_link(citation: str) -> str:
    """The address of the paper a citation names (arXiv, DOI, the venue); "" when there is none:
    never a search-engine query."""
    p = paper_of(citation)
    return p.url if p is not None else ""
