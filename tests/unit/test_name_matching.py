"""Watchman-like name scoring (pure), on the real SDN snapshot."""

import pytest

from shared.compliance.names import NameIndex, best_pairs_score, normalise, token_score
from tests.support.compliance import real_lists


@pytest.fixture(scope="module")
def index():
    lists = real_lists()
    individuals = {e["ent_num"]: e for e in lists.entries if e["sdn_type"] == "individual"}
    from shared.compliance.names import ListedName

    names = [ListedName(n, None, e["name"]) for n, e in individuals.items()]
    names += [ListedName(a["ent_num"], a["alt_num"], a["name"]) for a in lists.aliases if a["ent_num"] in individuals]
    return NameIndex(names)


def test_normalise_folds_accents_punctuation_and_ofac_name_order():
    assert normalise("NASSER ARANA, Carlos Alberto", listed_individual=True) == "carlos alberto nasser arana"
    assert normalise("José  O'Brien-Núñez") == "jose o brien nunez"


def test_penalties_follow_watchman():
    assert token_score("smith", "smith") == 1.0
    # A different first letter costs 10 %; a length difference costs more the larger it is.
    assert token_score("mith", "smith") < token_score("smth", "smith")
    # Unmatched listed tokens cost: "John Doe" is not "John Bartholomew Doe".
    assert best_pairs_score(["john", "doe"], ["john", "doe"]) == 1.0
    assert best_pairs_score(["john", "doe"], ["john", "bartholomew", "doe"]) < 0.9


def test_a_real_entry_with_a_typo_still_scores_high(index):
    [best, *_] = index.search("Carlos Alberto Naser Arana", 0.85)
    assert (best.listed.ent_num, best.listed.name) == (6333, "NASSER ARANA, Carlos Alberto")
    assert 0.95 < best.score < 1.0


def test_a_name_in_cyrillic_meets_the_lists_latin_spelling(index):
    assert normalise("Дмитрий Игоревич Попов") == "dmitriy igorevich popov"
    [best, *_] = index.search("Дмитрий Игоревич Попов", 0.85)
    assert (best.listed.ent_num, best.listed.name) == (10030, "POPOV, Dimitri Igorevich")


def test_unrelated_names_do_not_match(index):
    for name in ("Ada Lovelace", "Tobias Wexler-Lindqvist", "Demo Depositor", "Grace Brewster Hopper"):
        assert index.search(name, 0.85) == []


@pytest.mark.parametrize("name", ["Carlos Alberto Naser Arana", "Mohammed Ali", "Maria Garcia", "Wei Zhang",
                                  "Carolina Fernandez Gonzales", "Kim Jong", "Ivan Petrov", "Ali Hassan Ahmed"])
def test_the_token_prefilter_finds_exactly_what_scoring_every_name_finds(index, name):
    assert index.search(name, 0.8, limit=20) == index.search_exhaustively(name, 0.8, limit=20)
