"""Fuzzy name matching against the SDN list (pure): how a compliance officer reads two names.

A name is normalised (transliterated to ASCII, so accents fold and Cyrillic or Greek names meet
OFAC's Latin spellings; punctuation dropped; lower case) and split into tokens. A listed
individual's "LAST, First" tells which tokens are the family name and which the given names.
Particles ("al", "bin", "de", ...) and titles ("Dr", "Haji", "Sheikh", ...) are kept but weigh
nothing: a name typed without them, or with them, is the same name.

Two tokens score the better of two rules, 0 below TOKEN_CUTOFF:
- **spelling**: Jaro-Winkler, times 0.9 when the first letters differ, and less the more the lengths
  differ (watchman's penalties; a typo or a dropped letter);
- **sound**: Jaro-Winkler of the tokens' transliteration keys (`sound_key`), times SOUND_WEIGHT and the
  same length penalty, so Omar/Umar, Mohamed/Muhammad, Yevgeny/Evgeni, Qadhafi/Gaddafi and
  Hussein/Husayn meet.

Two names score by their best token pairs (best first, each token used once), averaged weighted by
length, then shrunk by what found no partner:
- every searched token matched, at least two of them, and the listed (first) family name and a given
  name among them (the way the press writes a listed person: "Nicolas Maduro" for "MADURO MOROS, Nicolas"):
  a missing middle name, patronymic or second surname costs little (MISSING_MIDDLE_PENALTY);
- otherwise an unmatched listed token costs UNMATCHED_LISTED_PENALTY of its share of the listed
  name, and an unmatched searched token UNMATCHED_SEARCHED_PENALTY of its share of the searched name;
  without the listed (first) family name, a match costs MISSING_FAMILY_PENALTY more.

`NameIndex.search` scores only the listed names that share close tokens with the searched name,
found through a blocking index (see there): 5,200-6,200 names a second on one core in `make bench`.
The blocking index is also stored with each list snapshot (shared/compliance/lists.py), so that one
registration's screening reads the part it needs instead of building the whole index.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from anyascii import anyascii
from rapidfuzz.distance import JaroWinkler

DIFFERENT_FIRST_LETTER_WEIGHT = 0.9
LENGTH_DIFFERENCE_PENALTY = 0.3
SOUND_WEIGHT = 0.96
UNMATCHED_LISTED_PENALTY = 0.3
UNMATCHED_SEARCHED_PENALTY = 0.3
MISSING_MIDDLE_PENALTY = 0.05
# Given names alone do not name a listed person: without the (first) family name a match costs this more.
MISSING_FAMILY_PENALTY = 0.15
# Searched tokens whose close listed tokens an index remembers (then it starts again).
CLOSE_CACHE_SIZE = 100_000
# A token pair scoring below this counts as no match.
TOKEN_CUTOFF = 0.8
# Joining words and name particles: part of a name, never what identifies it.
PARTICLES = frozenset(
    "al el ul ad ar as at az an ash bin ibn bint ben bent binti de del della der den di da do dos das du van "
    "von la le y e".split())
# Honorifics, religious and military titles: "Dr. Ayman AL ZAWAHIRI" is "Ayman al-Zawahiri".
TITLES = frozenset(
    "mr mrs ms miss dr doctor prof professor sir lord sheikh shaykh sheik shaikh haji hajji hadji alhaji mullah "
    "mulla mawlawi maulawi maulvi maulana molvi mawlana qari hafiz hafez imam ayatollah ayatullah hojatoleslam "
    "sayyid sayyed seyed general gen colonel col major maj captain capt lieutenant brigadier".split())
GIVEN, FAMILY, MINOR = "given", "family", "minor"
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Transliteration rules, applied in order: one spelling per sound where romanisations of Arabic,
# Persian, Russian and Korean disagree (kh/h, q/k/g, dh/d, ou/u, ee/i, o/u and e/i/y vowels, ...).
_SOUND_RULES = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"^ye", "e"), (r"^yu", "u"), (r"^iu", "u"),
    (r"sch|sh", "S"), (r"tch|ch|zh|dj|j", "J"), (r"kh", "h"), (r"gh", "g"), (r"dh", "d"), (r"th", "t"),
    (r"ph", "f"), (r"ck|q|c|g", "k"), (r"x", "ks"), (r"w", "v"),
    (r"ou|oo", "u"), (r"ee|ie", "i"), (r"o", "u"), (r"[ey]", "i"), (r"ai", "i"),
    (r"(.)\1+", r"\1"), (r"(?<=[aiu])h$", ""),
)]


@functools.cache
def rules_version() -> str:
    """What a stored blocking index must have been built by to be read (shared/compliance/lists.py): this
    module's source and the transliteration package's version. Keys built by other rules may differ from
    the keys this code looks up, and a listed name would then go unfound."""
    # The package's version from its installed metadata directory: importlib.metadata takes 50 ms to load.
    packages = Path(sys.modules[anyascii.__module__].__file__ or "").resolve().parent.parent
    transliteration = sorted(path.name for path in packages.glob("anyascii-*.dist-info")) or ["anyascii"]
    return hashlib.sha256(Path(__file__).read_bytes() + " ".join(transliteration).encode()).hexdigest()[:16]


def normalise(name: str) -> str:
    """Lower-case ASCII words, punctuation dropped."""
    # Transliterated, not dropped: "Дмитрий Попов" must meet the list's "POPOV, Dimitri".
    return _NOT_ALNUM.sub(" ", anyascii(name).lower()).strip()


@functools.lru_cache(maxsize=1 << 16)
def sound_key(token: str) -> str:
    """The token as it sounds, spelled one way (see _SOUND_RULES)."""
    for pattern, replacement in _SOUND_RULES:
        token = pattern.sub(replacement, token)
    return token


def token_match(searched: str, listed: str) -> tuple[float, str]:
    """(score, rule) of two tokens: rule "exact", "spelling" or "sound"; (0, "") below the cutoff."""
    if searched == listed:
        return 1.0, "exact"
    # This runs for every close pair of every search, so it is written out flat.
    spelling = JaroWinkler.normalized_similarity(searched, listed)
    if searched[0] != listed[0]:
        spelling *= DIFFERENT_FIRST_LETTER_WEIGHT
    short, long = (len(searched), len(listed)) if len(searched) < len(listed) else (len(listed), len(searched))
    spelling *= 1 - LENGTH_DIFFERENCE_PENALTY * (1 - short / long)
    searched_key, listed_key = sound_key(searched), sound_key(listed)
    short, long = ((len(searched_key), len(listed_key)) if len(searched_key) < len(listed_key)
                   else (len(listed_key), len(searched_key)))
    sound = (SOUND_WEIGHT * JaroWinkler.normalized_similarity(searched_key, listed_key)
             * (1 - LENGTH_DIFFERENCE_PENALTY * (1 - short / long))) if long else 0.0
    if spelling >= sound:
        return (spelling, "spelling") if spelling >= TOKEN_CUTOFF else (0.0, "")
    return (sound, "sound") if sound >= TOKEN_CUTOFF else (0.0, "")


def token_score(searched: str, listed: str) -> float:
    """The score of `token_match`."""
    return token_match(searched, listed)[0]


def name_roles(name: str, *, listed_individual: bool = False) -> tuple[list[str], list[str]]:
    """Tokens in reading order, and each one's role: GIVEN, FAMILY (from "LAST, First"), or MINOR.

    MINOR tokens are particles and titles. A name without "LAST, First" has GIVEN tokens only.
    """
    family = ""
    if listed_individual and name.count(",") == 1:
        family, name = name.split(",")
    tokens, roles = [], []
    for part, role in ((name, GIVEN), (family, FAMILY)):
        for token in normalise(part).split():
            tokens.append(token)
            roles.append(MINOR if token in PARTICLES or token in TITLES else role)
    return tokens, roles


def searched_readings(name: str) -> list[list[str]]:
    """The ways to read a searched name: as typed; with "al"/"el" split off a joined word ("Alqadri"),
    each such word alone and all of them; with particles joined to the next word ("Al Qadri" for a
    list that writes "ALQADRI")."""
    tokens = normalise(name).split()
    readings = [tokens]
    joined_al = [i for i, token in enumerate(tokens) if len(token) >= 5 and token[:2] in ("al", "el")]
    splits = [[i] for i in joined_al[:3]] + ([joined_al] if len(joined_al) > 1 else [])
    for split in splits:
        readings.append([part for i, token in enumerate(tokens)
                         for part in ((token[:2], token[2:]) if i in split else (token,))])
    joined: list[str] = []
    carry = ""
    for token in tokens:
        if token in PARTICLES and token not in ("y", "e"):
            carry += token
        else:
            joined.append(carry + token)
            carry = ""
    if joined and joined != tokens:
        readings.append(joined)
    return readings


@dataclass(frozen=True)
class Scored:
    """How well one reading of a searched name matches one listed name, and why."""

    score: float
    # (listed token, rule, score) per matched pair: the searched side is not kept
    pairs: tuple[tuple[str, str, float], ...] = ()
    unmatched_listed: tuple[str, ...] = ()
    unmatched_searched: int = 0
    coverage: str = ""


_NO_MATCH = (0.0, "")


class _ClosePairs(dict):
    """(searched token, listed token) -> (score, rule) of the close pairs a search found; no match else."""

    def __missing__(self, pair: tuple[str, str]) -> tuple[float, str]:
        return _NO_MATCH


class _EveryPair(dict):
    """(searched token, listed token) -> (score, rule), computed on first use."""

    def __missing__(self, pair: tuple[str, str]) -> tuple[float, str]:
        self[pair] = match = token_match(*pair)
        return match


PairScores = dict[tuple[str, str], tuple[float, str]]


def _significant(tokens: list[str], roles: list[str] | None = None) -> list[int]:
    """Positions of the tokens that identify a name (not particles or titles); all when there are none."""
    if roles is None:
        roles = [MINOR if t in PARTICLES or t in TITLES else GIVEN for t in tokens]
    return [i for i, role in enumerate(roles) if role != MINOR] or list(range(len(tokens)))


def _names_a_person(listed_significant: list[int], roles: list[str], matched: set[int] | set[str],
                    key=lambda j: j) -> bool:
    """Whether the matched listed tokens hold what names a listed person: the (first) family name and a
    given name, when the listed name has them (a name whose given part is only a title has no given
    name to match). `key` maps a token position to what `matched` holds."""
    family = [j for j in listed_significant if roles[j] == FAMILY]
    if family and key(family[0]) not in matched:
        return False
    given = [j for j in listed_significant if roles[j] == GIVEN]
    return not (family and given) or any(key(j) in matched for j in given)


def score_names(searched: list[str], listed: list[str], roles: list[str] | None = None) -> Scored:
    """How well two tokenised names match, 0 to 1, with the evidence."""
    roles = roles or [MINOR if t in PARTICLES or t in TITLES else GIVEN for t in listed]
    return _score(searched, _significant(searched), listed, _significant(listed, roles), roles, _EveryPair())


def _score(searched: list[str], searched_significant: list[int], listed: list[str], listed_significant: list[int],
           roles: list[str], pair_scores: PairScores) -> Scored:
    if not searched_significant or not listed_significant:
        return Scored(0.0)
    pairs = []
    for i in searched_significant:
        for j in listed_significant:
            score, rule = pair_scores[searched[i], listed[j]]
            if score:
                pairs.append((score, i, j, rule))
    if not pairs:
        return Scored(0.0)
    pairs.sort(reverse=True)
    used_searched: set[int] = set()
    used_listed: set[int] = set()
    matched: list[tuple[str, str, float]] = []
    weighted = weights = 0.0
    for score, i, j, rule in pairs:
        if i in used_searched or j in used_listed:
            continue
        used_searched.add(i)
        used_listed.add(j)
        weight = len(searched[i]) + len(listed[j])
        weighted += score * weight
        weights += weight
        matched.append((listed[j], rule, round(score, 4)))
    unmatched_listed = [j for j in listed_significant if j not in used_listed]
    unmatched_searched = [i for i in searched_significant if i not in used_searched]
    listed_share = sum(len(listed[j]) for j in unmatched_listed) / sum(len(listed[j]) for j in listed_significant)
    searched_share = (sum(len(searched[i]) for i in unmatched_searched)
                      / sum(len(searched[i]) for i in searched_significant))
    whole_name = not unmatched_searched and len(used_listed) >= 2 and _names_a_person(
        listed_significant, roles, used_listed)
    listed_penalty = MISSING_MIDDLE_PENALTY if whole_name else UNMATCHED_LISTED_PENALTY
    score = (weighted / weights * (1 - listed_penalty * listed_share)
             * (1 - UNMATCHED_SEARCHED_PENALTY * searched_share))
    family = next((j for j in listed_significant if roles[j] == FAMILY), None)
    if family is not None and family not in used_listed:
        score *= 1 - MISSING_FAMILY_PENALTY
    coverage = ("every listed name" if not unmatched_listed
                else "given and family name; a middle name, patronymic or second surname missing" if whole_name
                else "part of the listed name")
    return Scored(score, tuple(matched), tuple(listed[j] for j in unmatched_listed), len(unmatched_searched),
                  coverage)


def best_pairs_score(searched: list[str], listed: list[str]) -> float:
    """How well two tokenised names match, 0 to 1 (no roles known)."""
    return score_names(searched, listed).score


@dataclass(frozen=True)
class ListedName:
    """One name on the list: an SDN entry's primary name (alt_num None) or one of its aliases."""

    ent_num: int
    alt_num: int | None
    name: str


@dataclass(frozen=True)
class NameMatch:
    """A listed name, how well the searched name matches it, and the evidence (listed side only)."""

    listed: ListedName
    score: float
    evidence: Scored = field(default_factory=lambda: Scored(0.0), compare=False)

    def describe(self) -> dict:
        """The evidence as stored with a hit: which listed tokens matched by which rule, what was missing."""
        return {"matched_tokens": [{"listed": listed, "rule": rule, "score": score}
                                   for listed, rule, score in self.evidence.pairs],
                "unmatched_listed_tokens": list(self.evidence.unmatched_listed),
                "unmatched_searched_tokens": self.evidence.unmatched_searched,
                "coverage": self.evidence.coverage}


def _deletions(word: str) -> set[str]:
    """The word and, when it has four letters or more, every word one letter shorter (a short word
    one letter away from another is mostly a different name: Ali, Ari, Al)."""
    if len(word) < 4:
        return {word}
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


def _neighbourhood(token: str) -> set[str]:
    """Blocking keys: the token and its one-letter deletions, and the same of its sound key. Two tokens
    one edit apart (a letter substituted, dropped, added, or two swapped) share a key, and so do two
    romanisations whose sound keys are one edit apart."""
    return _deletions(token) | {"~" + key for key in _deletions(sound_key(token))}


def _searched_tokens(reading: list[str]) -> list[str]:
    """The tokens of a reading a search looks up: its significant ones, each once."""
    return list(dict.fromkeys([t for t in reading if t not in PARTICLES and t not in TITLES] or reading))


def search_keys(name: str) -> set[str]:
    """Every blocking key a search for `name` looks up (what a stored index is asked for)."""
    return {key for reading in searched_readings(name) for token in _searched_tokens(reading)
            for key in _neighbourhood(token)}


class NameIndex:
    """The listed names of one snapshot, tokenised once, searchable many times.

    A search finds each searched token's close listed tokens through a blocking index (SymSpell's
    one-letter deletions, of the spelling and of the sound key: see `_neighbourhood`), scores those
    pairs, and fully scores only the listed names that contain enough close tokens: two, or all of
    the searched or listed name's significant tokens when it has fewer. A unit test checks that this
    finds what scoring every listed name finds, on the evaluation set.

    Built from a stored index (shared/compliance/lists.py), `names` are the listed names one search can
    reach, in the snapshot's order, and `neighbours` the blocking index's entries for that search's keys
    (`search_keys`): that search then finds what the whole index finds.
    """

    def __init__(self, names: Iterable[ListedName], neighbours: dict[str, list[str]] | None = None) -> None:
        self.names = list(names)
        self.tokens: list[list[str]] = []
        self.roles: list[list[str]] = []
        self.significant_positions: list[list[int]] = []
        postings: dict[str, list[int]] = {}
        for position, listed in enumerate(self.names):
            tokens, roles = name_roles(listed.name, listed_individual=True)
            self.tokens.append(tokens)
            self.roles.append(roles)
            self.significant_positions.append(_significant(tokens, roles))
            for token in set(tokens):
                postings.setdefault(token, []).append(position)
        self.postings = postings
        # Listed names with one significant token: a single close token is enough to score them.
        self.one_word = {position for position, significant in enumerate(self.significant_positions)
                         if len(significant) < 2}
        if neighbours is None:
            neighbours = {}
            for token in postings:
                for key in _neighbourhood(token):
                    neighbours.setdefault(key, []).append(token)
        self.neighbours = neighbours
        self._close_cache: dict[str, dict[str, tuple[float, str]]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def _close_tokens(self, token: str) -> dict[str, tuple[float, str]]:
        """Listed tokens within TOKEN_CUTOFF of `token`, with (score, rule); remembered, since names
        share words (a batch of rescreening meets "muhammad" or "maria" thousands of times)."""
        close = self._close_cache.get(token)
        if close is None:
            if len(self._close_cache) >= CLOSE_CACHE_SIZE:
                self._close_cache.clear()
            candidates: dict[str, tuple[float, str]] = {}
            for key in _neighbourhood(token):
                for listed in self.neighbours.get(key, ()):
                    if listed not in candidates:
                        candidates[listed] = token_match(token, listed)
            close = self._close_cache[token] = {listed: match for listed, match in candidates.items() if match[0]}
        return close

    def _candidates(self, readings: list[list[str]], min_score: float) -> tuple[PairScores, set[int]]:
        """Close token pairs, and the listed names worth scoring: those sharing enough close tokens with
        a reading, and whose score could still reach `min_score`: a searched token no token of the name
        is close to, and a listed token no searched token is close to, cost at least their penalties."""
        pair_scores = _ClosePairs()
        close: dict[str, set[int]] = {}
        close_listed: set[str] = set()
        candidates: set[int] = set()
        for reading in readings:
            unique = _searched_tokens(reading)
            for token in unique:
                if token not in close:
                    positions: set[int] = set()
                    for listed, match in self._close_tokens(token).items():
                        pair_scores[token, listed] = match
                        close_listed.add(listed)
                        positions.update(self.postings[listed])
                    close[token] = positions
            # Names two searched tokens meet (set intersections run in C), or one-word listed names.
            if len(unique) == 1:
                found = set(close[unique[0]])
            else:
                found = set().union(*(close[a] & close[b] for n, a in enumerate(unique) for b in unique[n + 1:]))
                found.update(*(close[token] & self.one_word for token in unique))
            significant = [t for t in reading if t not in PARTICLES and t not in TITLES] or reading
            length = sum(map(len, significant))
            for position in found - candidates:
                missing = sum(len(t) for t in significant if position not in close[t])
                if self._upper_bound(position, missing / length, close_listed) >= min_score:
                    candidates.add(position)
        return pair_scores, candidates

    def _upper_bound(self, position: int, searched_unmatched_share: float, close_listed: set[str]) -> float:
        """The most listed name `position` can score (see the class docstring)."""
        tokens, roles = self.tokens[position], self.roles[position]
        significant = self.significant_positions[position]
        total = unmatched = 0
        for j in significant:
            total += len(tokens[j])
            if tokens[j] not in close_listed:
                unmatched += len(tokens[j])
        whole_name_possible = not searched_unmatched_share and _names_a_person(
            significant, roles, close_listed, key=tokens.__getitem__)
        penalty = MISSING_MIDDLE_PENALTY if whole_name_possible else UNMATCHED_LISTED_PENALTY
        family = next((j for j in significant if roles[j] == FAMILY), None)
        family_missing = family is not None and tokens[family] not in close_listed
        return ((1 - penalty * unmatched / total) * (1 - UNMATCHED_SEARCHED_PENALTY * searched_unmatched_share)
                * (1 - MISSING_FAMILY_PENALTY * family_missing))

    def search(self, name: str, min_score: float, limit: int = 5) -> list[NameMatch]:
        """The best matches scoring at least `min_score`, best first, one per SDN entry."""
        readings = searched_readings(name)
        pair_scores, candidates = self._candidates(readings, min_score)
        return self._best(readings, candidates, min_score, limit, pair_scores)

    def search_exhaustively(self, name: str, min_score: float, limit: int = 5) -> list[NameMatch]:
        """`search` without the blocking index: every listed name scored (tests compare the two)."""
        return self._best(searched_readings(name), range(len(self.names)), min_score, limit, _EveryPair())

    def _best(self, readings: list[list[str]], positions: Iterable[int], min_score: float, limit: int,
              pair_scores: PairScores) -> list[NameMatch]:
        significant = [_significant(reading) for reading in readings]
        best: dict[int, NameMatch] = {}
        # In the snapshot's order: of an entry's names scoring alike, the first is its match, whichever
        # index (whole, or the part one search reaches) numbers them.
        for position in sorted(positions):
            tokens, listed_significant, roles = self.tokens[position], self.significant_positions[position], \
                self.roles[position]
            scored = max((_score(reading, reading_significant, tokens, listed_significant, roles, pair_scores)
                          for reading, reading_significant in zip(readings, significant, strict=True)),
                         key=lambda s: s.score)
            listed = self.names[position]
            score = round(scored.score, 4)
            if score >= min_score and (listed.ent_num not in best or score > best[listed.ent_num].score):
                best[listed.ent_num] = NameMatch(listed, score, scored)
        return sorted(best.values(), key=lambda match: (-match.score, match.listed.ent_num))[:limit]
