"""Fuzzy name matching against the SDN list, scored the way moov-io/watchman scores (pure).

A name is normalised (transliterated to ASCII, so accents fold and Cyrillic or Greek names meet
OFAC's Latin spellings; punctuation dropped; lower case; OFAC's "LAST, First" turned around) and
split into tokens. Two names score by their best token pairs:

- each token pair scores Jaro-Winkler, times 0.9 when the first letters differ, and less the more
  the two lengths differ;
- pairs are taken best first, each token used once, and averaged weighted by length;
- the result shrinks with the share of the listed name's characters (and of the searched name's)
  that found no partner, so "John Doe" does not match "John Bartholomew Doe" perfectly.

Scoring every listed name in Python would be slow; `NameIndex.search` scores only the names that
share a close token with the searched name (see there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from anyascii import anyascii
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

DIFFERENT_FIRST_LETTER_WEIGHT = 0.9
LENGTH_DIFFERENCE_PENALTY = 0.3
UNMATCHED_LISTED_PENALTY = 0.3
UNMATCHED_SEARCHED_PENALTY = 0.15
# A token pair scoring below this counts as no match.
TOKEN_CUTOFF = 0.8
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise(name: str, *, listed_individual: bool = False) -> str:
    """Lower-case ASCII words; for a listed individual, "LAST, First" becomes "first last"."""
    if listed_individual and name.count(",") == 1:
        last, first = name.split(",")
        name = f"{first} {last}"
    # Transliterated, not dropped: "Дмитрий Попов" must meet the list's "POPOV, Dimitri".
    return _NOT_ALNUM.sub(" ", anyascii(name).lower()).strip()


def token_score(searched: str, listed: str) -> float:
    """Jaro-Winkler of two tokens with watchman's first-letter and length penalties; 0 below the cutoff."""
    return _penalised(searched, listed, JaroWinkler.normalized_similarity(searched, listed))


def _penalised(searched: str, listed: str, jaro_winkler: float) -> float:
    score = jaro_winkler
    if searched[:1] != listed[:1]:
        score *= DIFFERENT_FIRST_LETTER_WEIGHT
    shorter, longer = sorted((len(searched), len(listed)))
    score *= 1 - LENGTH_DIFFERENCE_PENALTY * (1 - shorter / longer)
    return score if score >= TOKEN_CUTOFF else 0.0


def best_pairs_score(searched: list[str], listed: list[str], pair_score=token_score) -> float:
    """How well two tokenised names match, 0 to 1."""
    if not searched or not listed:
        return 0.0
    pairs = sorted(((pair_score(s, t), i, j) for i, s in enumerate(searched) for j, t in enumerate(listed)),
                   reverse=True)
    used_searched: set[int] = set()
    used_listed: set[int] = set()
    weighted = weights = 0.0
    for score, i, j in pairs:
        if i in used_searched or j in used_listed:
            continue
        used_searched.add(i)
        used_listed.add(j)
        weight = len(searched[i]) + len(listed[j])
        weighted += score * weight
        weights += weight
    matched_listed = sum(len(listed[j]) for j in used_listed)
    matched_searched = sum(len(searched[i]) for i in used_searched)
    return (weighted / weights
            * (1 - UNMATCHED_LISTED_PENALTY * (1 - matched_listed / sum(map(len, listed))))
            * (1 - UNMATCHED_SEARCHED_PENALTY * (1 - matched_searched / sum(map(len, searched)))))


@dataclass(frozen=True)
class ListedName:
    """One name on the list: an SDN entry's primary name (alt_num None) or one of its aliases."""

    ent_num: int
    alt_num: int | None
    name: str


@dataclass(frozen=True)
class NameMatch:
    """A listed name and how well the searched name matches it."""

    listed: ListedName
    score: float


class NameIndex:
    """The listed names of one snapshot, tokenised once, searchable many times.

    A search first finds, per searched token, the listed tokens within reach (rapidfuzz's C
    Jaro-Winkler over the vocabulary), and scores only the names that contain one of them. A token
    pair below TOKEN_CUTOFF counts as no match in `best_pairs_score` too, so this finds exactly what
    scoring every name would (a unit test compares the two).
    """

    def __init__(self, names: Iterable[ListedName]) -> None:
        self.names = list(names)
        self.tokens = [normalise(n.name, listed_individual=True).split() for n in self.names]
        postings: dict[str, list[int]] = {}
        for position, tokens in enumerate(self.tokens):
            for token in set(tokens):
                postings.setdefault(token, []).append(position)
        self.postings = postings
        self.vocabulary = list(postings)

    def __len__(self) -> int:
        return len(self.names)

    def search(self, name: str, min_score: float, limit: int = 5) -> list[NameMatch]:
        """The best matches scoring at least `min_score`, best first, one per SDN entry."""
        searched = normalise(name).split()
        scores: dict[tuple[str, str], float] = {}
        candidates: set[int] = set()
        for token in set(searched):
            for listed_token, jaro_winkler, _ in process.extract(
                    token, self.vocabulary, scorer=JaroWinkler.normalized_similarity,
                    score_cutoff=TOKEN_CUTOFF, limit=None):
                score = _penalised(token, listed_token, jaro_winkler)
                if score:
                    scores[token, listed_token] = score
                    candidates.update(self.postings[listed_token])

        def pair_score(searched_token: str, listed_token: str) -> float:
            return scores.get((searched_token, listed_token), 0.0)

        best: dict[int, NameMatch] = {}
        for position in candidates:
            score = best_pairs_score(searched, self.tokens[position], pair_score)
            listed = self.names[position]
            if score >= min_score and (listed.ent_num not in best or score > best[listed.ent_num].score):
                best[listed.ent_num] = NameMatch(listed, round(score, 4))
        return sorted(best.values(), key=lambda match: (-match.score, match.listed.ent_num))[:limit]

    def search_exhaustively(self, name: str, min_score: float, limit: int = 5) -> list[NameMatch]:
        """`search` without the token prefilter: every listed name scored (tests compare the two)."""
        searched = normalise(name).split()
        best: dict[int, NameMatch] = {}
        for position, tokens in enumerate(self.tokens):
            score = best_pairs_score(searched, tokens)
            listed = self.names[position]
            if score >= min_score and (listed.ent_num not in best or score > best[listed.ent_num].score):
                best[listed.ent_num] = NameMatch(listed, round(score, 4))
        return sorted(best.values(), key=lambda match: (-match.score, match.listed.ent_num))[:limit]
