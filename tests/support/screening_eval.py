"""The labelled evaluation set of name screening, generated from the real SDN snapshot in the repository.

    python -m tests.support.screening_eval       # rewrite tests/support/screening_eval.json

Positives are variants of listed individuals' names and aliases, one kind each, written the way people
type them (seeded, so the file is reproducible; a unit test regenerates it and compares):

- reordered: family name first, or the words shuffled;
- typo: one letter substituted, dropped, doubled or swapped with its neighbour;
- particles_dropped: "al", "bin", "de", ... left out;
- al_joined: "al"/"el" written together with the next word ("Alqadri");
- transliteration: one word replaced by another romanisation of it, from TRANSLITERATIONS, a table of
  spellings found in the press and in other lists (never read by the scorer, which has generic rules);
- title_dropped: "Dr", "Haji", "Mullah", ... left out;
- middle_missing: a middle given name left out;
- patronymic_missing: a Russian or Ukrainian patronymic left out;
- second_surname_missing: the second of two family names left out;
- press: well-known listed people as the press writes them (PRESS, each checked against its entry).

Negatives are common real given and family names of many languages (GIVEN_NAMES x FAMILY_NAMES, sampled),
each labelled with whether all its words appear in one listed entry (such a name is a fair REVIEW, so the
false-positive rate is reported on the others).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from shared.compliance.names import PARTICLES, TITLES, normalise
from tests.support.compliance import real_lists

EVAL_FILE = Path(__file__).with_name("screening_eval.json")
SEED = 20261202
PER_KIND = 40
CLEAN_NAMES = 400

TRANSLITERATIONS = [
    ["muhammad", "mohammed", "mohamed", "mohammad", "muhammed", "mohamad", "muhamad"],
    ["omar", "umar"], ["osama", "usama"], ["usman", "osman", "othman", "uthman"],
    ["yevgeniy", "yevgeny", "evgeny", "evgeni", "evgeniy"], ["qadhafi", "gaddafi", "kadhafi", "qaddafi", "gadhafi"],
    ["hussein", "husayn", "hussain", "husain", "husein"], ["hasan", "hassan"], ["ahmad", "ahmed"],
    ["abdullah", "abdallah", "abdulla"], ["yusuf", "yousef", "youssef", "yousuf", "yusef"],
    ["mustafa", "mostafa", "moustafa", "mustapha"], ["mahmoud", "mahmud", "mahmood"], ["khalid", "khaled"],
    ["said", "saeed", "saied"], ["salih", "saleh"], ["hamid", "hameed"], ["rashid", "rasheed"],
    ["ibrahim", "ebrahim", "ibraheem"], ["ismail", "ismael", "esmail"], ["yahya", "yehia", "yahia"],
    ["jamal", "gamal"], ["qasem", "qassem", "kasem", "qasim", "kassem"], ["soleimani", "suleimani", "solaimani"],
    ["suleiman", "sulayman", "suleyman", "sulaiman"], ["faisal", "faysal", "feisal"], ["abu", "abou"],
    ["aleksandr", "alexander", "aleksander", "alexandr"], ["sergey", "sergei", "serguei"],
    ["dmitry", "dmitri", "dmitriy"], ["yuri", "yury", "yuriy"], ["nikolai", "nikolay"],
    ["alexey", "aleksey", "alexei", "aleksei"], ["andrey", "andrei"], ["viktor", "victor"],
    ["mikhail", "michail"], ["gennady", "gennadiy", "gennadi"], ["arkady", "arkadiy", "arkadi"],
    ["valery", "valeriy", "valeri"], ["anatoly", "anatoliy", "anatoli"], ["vasily", "vasiliy", "vasili"],
    ["jong", "chong"], ["chol", "cheol"], ["khalil", "khaleel"], ["nasser", "nasir", "naser"],
    ["abdul", "abdel"], ["hezbollah", "hizballah"], ["mousa", "musa", "moussa"], ["tariq", "tarek", "tarik"],
    ["walid", "waleed"], ["majid", "majeed"], ["adel", "adil"], ["ayman", "aiman"], ["khan"],
]

# (as the press writes it, the entry's ent_num, the entry's listed name as a check)
PRESS = [
    ("Kim Jong-un", 20157, "KIM, Jong Un"), ("Bashar al-Assad", 12735, "AL-ASSAD, Bashar"),
    ("Bashar Assad", 12735, "AL-ASSAD, Bashar"), ("Maher al-Assad", 12725, "AL-ASSAD, Maher"),
    ("Nicolas Maduro", 22790, "MADURO MOROS, Nicolas"), ("Oleg Deripaska", 24283, "DERIPASKA, Oleg Vladimirovich"),
    ("Viktor Vekselberg", 24306, "VEKSELBERG, Viktor Feliksovich"),
    ("Ramzan Kadyrov", 23343, "KADYROV, Ramzan Akhmatovich"),
    ("Ayatollah Ali Khamenei", 26945, "KHAMENEI, Ali Husseini"),
    ("Ali Khamenei", 26945, "KHAMENEI, Ali Husseini"), ("Hassan Nasrallah", 2686, "NASRALLAH, Hasan"),
    ("Ayman al-Zawahiri", 2676, "AL ZAWAHIRI, Dr. Ayman"), ("Ayman Zawahri", 2676, "AL ZAWAHIRI, Dr. Ayman"),
    ("Joaquin Guzman", 6861, "GUZMAN LOERA, Joaquin"), ("Ismael Zambada", 7226, "ZAMBADA GARCIA, Ismael"),
    ("Yevgeny Prigozhin", 21171, "PRIGOZHIN, Yevgeniy Viktorovich"), ("Arkady Rotenberg", 16669, "ROTENBERG, Arkady"),
    ("Gennadiy Timchenko", 16666, "TIMCHENKO, Gennady"), ("Igor Sechin", 16692, "SECHIN, Igor"),
    ("Suleyman Kerimov", 24325, "KERIMOV, Suleiman Abusaidovich"),
    ("Viktor Yanukovich", 16641, "YANUKOVYCH, Viktor Fedorovych"), ("Qassem Suleimani", 10481, "SOLEIMANI, Qasem"),
    ("Qasem Soleimani", 10481, "SOLEIMANI, Qasem"), ("Muammar Gaddafi", 12606, "QADHAFI, Muammar"),
    ("Moammar Kadhafi", 12606, "QADHAFI, Muammar"), ("Saif al-Islam Gaddafi", 12608, "QADHAFI, Saif al-Islam"),
    ("Robert Mugabe", 7480, "MUGABE, Robert Gabriel"), ("Emmerson Mnangagwa", 7513, "MNANGAGWA, Emmerson Dambudzo"),
    ("Kim Yo-jong", 21444, "KIM, Yo Jong"), ("Diosdado Cabello", 24424, "CABELLO RONDON, Diosdado"),
    ("Abdul Qadeer Khan", 11357, "KHAN, Abdul Qadeer"), ("Dawood Ibrahim", 9758, "IBRAHIM, Dawood"),
    ("Sirajuddin Haqqani", 10743, "MUHAMMAD, Sirajuddin Haqqani Jalaluddin Khwasa"),
    ("Vladislav Surkov", 16655, "SURKOV, Vladislav Yurievich"),
    ("Nikolai Patrushev", 24309, "PATRUSHEV, Nikolai Platonovich"),
    ("Mohammad Javad Zarif", 26950, "ZARIF, Mohammad Javad"), ("Javad Zarif", 26950, "ZARIF, Mohammad Javad"),
    ("Ebrahim Raisi", 27844, "RAISI, Ebrahim"), ("Ibrahim Raisi", 27844, "RAISI, Ebrahim"),
    ("Vladimir Yakunin", 16667, "YAKUNIN, Vladimir Ivanovich"), ("Alexei Miller", 24083, "MILLER, Alexey Borisovich"),
    ("Yuri Kovalchuk", 16680, "KOVALCHUK, Yuri Valentinovich"), ("Rafael Caro Quintero", 6707, "CARO QUINTERO, Rafael"),
    ("Yahya Sinwar", 18528, "SINWAR, Yahya"), ("Mohammed Deif", 18529, "DEIF, Muhammed"),
    ("Abubakar Shekau", 15009, "SHEKAU, Abubakar"), ("Qais al-Khazali", 28004, "AL-KHAZALI, Qais"),
    ("Abu Mahdi al-Muhandis", 11461, "AL-MUHANDIS, Abu Mahdi"), ("Gulbuddin Hekmatyar", 7471, "HEKMATYAR, Gulbuddin"),
    ("Viktor Bout", 8279, "BOUT, Viktor Anatolijevitch"), ("Mojtaba Khamenei", 27848, "KHAMENEI, Mojtaba"),
    ("Hamza bin Laden", 21286, "BIN LADEN, Hamza"), ("Alexander Bortnikov", 31126, "BORTNIKOV, Aleksandr Vasilievich"),
    ("Vladimir Kolokoltsev", 24319, "KOLOKOLTSEV, Vladimir Alexandrovich"), ("Grace Mugabe", 7524, "MUGABE, Grace"),
    ("Cilia Flores", 25079, "FLORES DE MADURO, Cilia Adela"), ("Miguel Trevino", 11528, "TREVINO MORALES, Miguel"),
]

GIVEN_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "William",
    "Susan", "Richard", "Jessica", "Thomas", "Sarah", "Daniel", "Karen", "Emma", "Olivia", "Noah", "Liam", "Sophie",
    "Lukas", "Hannah", "Jan", "Anna", "Pierre", "Camille", "Giulia", "Marco", "Lucia", "Pablo", "Carmen", "Diego",
    "Valentina", "Joao", "Ana", "Bruno", "Fatima", "Aisha", "Youssef", "Mariam", "Karim", "Leila", "Amir", "Zainab",
    "Tariq", "Nadia", "Olga", "Natalia", "Pavel", "Irina", "Anton", "Svetlana", "Wei", "Li", "Mei", "Hiroshi",
    "Yuki", "Haruto", "Min-jun", "Ji-woo", "Priya", "Rahul", "Ananya", "Arjun", "Sanjay", "Chinedu", "Ngozi", "Kwame",
    "Amara", "Oluwaseun", "Thandiwe", "Mehmet", "Ayse", "Emre", "Zeynep", "Nguyen", "Linh", "Siddharth", "Ingrid",
    "Lars", "Astrid", "Matteo", "Chiara", "Tomasz", "Agnieszka", "Dimitrios", "Eleni", "Kofi", "Esi", "Rafael",
]
FAMILY_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clarke", "Walker",
    "Wright", "Thompson", "Evans", "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Martin", "Bernard",
    "Dubois", "Moreau", "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Silva", "Santos", "Oliveira", "Pereira",
    "Costa", "Garcia", "Martinez", "Lopez", "Sanchez", "Perez", "Gomez", "Fernandez", "Diaz", "Moreno", "Ivanova",
    "Smirnov", "Kuznetsova", "Popova", "Sokolov", "Lebedeva", "Novak", "Kowalski", "Nowak", "Wisniewska", "Wang",
    "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Sato", "Suzuki", "Takahashi", "Tanaka", "Park", "Lee", "Choi",
    "Sharma", "Patel", "Singh", "Gupta", "Iyer", "Okafor", "Adeyemi", "Mensah", "Osei", "Mwangi", "Dlamini",
    "Yilmaz", "Kaya", "Demir", "Celik", "Tran", "Pham", "Haddad", "Khoury", "Mansour", "Nasser", "Farouk", "Amini",
    "Hosseini", "Karimi", "Larsen", "Hansen", "Johansson", "Nielsen", "Jensen", "Papadopoulos", "Mendes", "Boateng",
]


def _individual_names(lists) -> list[tuple[int, str]]:
    individuals = {e["ent_num"] for e in lists.entries if e["sdn_type"] == "individual"}
    names = [(e["ent_num"], e["name"]) for e in lists.entries if e["ent_num"] in individuals]
    names += [(a["ent_num"], a["name"]) for a in lists.aliases if a["ent_num"] in individuals]
    return [(ent_num, name) for ent_num, name in names if name.count(",") == 1]


def _parts(name: str) -> tuple[list[str], list[str]]:
    family, given = name.split(",")
    return normalise(given).split(), normalise(family).split()


def _typo(rng: random.Random, word: str) -> str:
    position = rng.randrange(len(word))
    letters = "abcdefghijklmnopqrstuvwxyz"
    edit = rng.choice(["substitute", "drop", "double", "swap"])
    if edit == "substitute":
        return word[:position] + rng.choice(letters.replace(word[position], "")) + word[position + 1:]
    if edit == "drop":
        return word[:position] + word[position + 1:]
    if edit == "double":
        return word[:position] + word[position] + word[position:]
    position = min(position, len(word) - 2)
    return word[:position] + word[position + 1] + word[position] + word[position + 2:]


def _significant(words: list[str]) -> list[str]:
    return [w for w in words if w not in PARTICLES and w not in TITLES]


def _variant(kind: str, rng: random.Random, given: list[str], family: list[str]) -> str | None:
    """One variant of a listed name of this kind, or None when the name has nothing to vary this way."""
    words = given + family
    if len(_significant(words)) < 2:
        return None
    if kind == "reordered":
        if rng.random() < 0.5:
            return " ".join(family + given)
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        return " ".join(shuffled)
    if kind == "typo":
        candidates = [i for i, w in enumerate(words) if len(w) >= 4]
        if not candidates:
            return None
        i = rng.choice(candidates)
        return " ".join(words[:i] + [_typo(rng, words[i])] + words[i + 1:])
    if kind == "particles_dropped":
        kept = [w for w in words if w not in PARTICLES]
        return " ".join(kept) if kept != words and len(kept) >= 2 else None
    if kind == "al_joined":
        for i, w in enumerate(words[:-1]):
            if w in ("al", "el"):
                return " ".join(words[:i] + [w + words[i + 1]] + words[i + 2:])
        return None
    if kind == "transliteration":
        for i in rng.sample(range(len(words)), len(words)):
            family_of = next((f for f in TRANSLITERATIONS if words[i] in f and len(f) > 1), None)
            if family_of:
                other = rng.choice([w for w in family_of if w != words[i]])
                return " ".join(words[:i] + [other] + words[i + 1:])
        return None
    if kind == "title_dropped":
        kept = [w for w in words if w not in TITLES]
        return " ".join(kept) if kept != words and len(_significant(kept)) >= 2 else None
    if kind == "middle_missing":
        middles = [i for i, w in enumerate(given) if i > 0 and w not in PARTICLES and w not in TITLES
                   and not re.search(r"(ovich|evich|ovna|evna|ovych|yevych|ich)$", w)]
        if not middles or len(_significant(given)) < 2:
            return None
        i = rng.choice(middles)
        return " ".join(given[:i] + given[i + 1:] + family)
    if kind == "patronymic_missing":
        kept = [w for w in given if not re.search(r"(ovich|evich|ovna|evna|ovych|yevych|ich|itch)$", w)]
        return " ".join(kept + family) if kept != given and kept else None
    if kind == "second_surname_missing":
        significant = _significant(family)
        if len(significant) != 2 or len(family) != 2:
            return None
        return " ".join(given + family[:1])
    raise ValueError(kind)


KINDS = ["reordered", "typo", "particles_dropped", "al_joined", "transliteration", "title_dropped",
         "middle_missing", "patronymic_missing", "second_surname_missing"]


def generate(seed: int = SEED) -> dict:
    """The evaluation set: {"positives": [{name, kind, ent_num, listed}],
    "negatives": [{name, all_words_in_one_entry}]}.

    Another seed draws other listed names and other clean names (the press names stay): the bench
    reports such a held-out set next to the committed one, which the scorer was tuned against.
    """
    lists = real_lists()
    names = _individual_names(lists)
    by_ent = {e["ent_num"]: e["name"] for e in lists.entries}
    rng = random.Random(seed)
    positives = []
    for kind in KINDS:
        order = names[:]
        rng.shuffle(order)
        chosen: set[int] = set()
        for ent_num, listed in order:
            if len(chosen) == PER_KIND:
                break
            if ent_num in chosen:
                continue
            variant = _variant(kind, rng, *_parts(listed))
            if variant:
                chosen.add(ent_num)
                positives.append({"name": variant, "kind": kind, "ent_num": ent_num, "listed": listed})
    for press, ent_num, listed in PRESS:
        if by_ent.get(ent_num) != listed:
            raise SystemExit(f"press name {press!r}: entry {ent_num} is {by_ent.get(ent_num)!r}, not {listed!r}")
        positives.append({"name": press, "kind": "press", "ent_num": ent_num, "listed": listed})

    entry_words: dict[int, set[str]] = {}
    for ent_num, listed in names:
        entry_words.setdefault(ent_num, set()).update(normalise(listed).split())
    negatives, seen = [], set()
    while len(negatives) < CLEAN_NAMES:
        name = f"{rng.choice(GIVEN_NAMES)} {rng.choice(FAMILY_NAMES)}"
        if rng.random() < 0.2:
            name = f"{rng.choice(GIVEN_NAMES)} {name}"
        if name in seen:
            continue
        seen.add(name)
        words = set(normalise(name).split())
        negatives.append({"name": name, "all_words_in_one_entry": any(words <= w for w in entry_words.values())})
    return {"seed": seed, "positives": positives, "negatives": negatives}


def load() -> dict:
    """The committed evaluation set."""
    return json.loads(EVAL_FILE.read_text())


def main() -> None:
    data = generate()
    EVAL_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for positive in data["positives"]:
        kinds[positive["kind"]] = kinds.get(positive["kind"], 0) + 1
    print(f"{EVAL_FILE}: {len(data['positives'])} positives {kinds}, {len(data['negatives'])} negatives")


if __name__ == "__main__":
    main()


def evaluate(search, threshold: float, data: dict | None = None) -> dict:
    """Recall per kind (the expected entry among the matches at `threshold`) and false positives.

    `search(name, threshold)` returns the ent_nums it matched. False positives are counted on the clean
    names whose words do not all appear in one listed entry ("fp"), and on all clean names ("fp_all").
    """
    data = data or load()
    kinds: dict[str, list[int]] = {}
    missed = []
    for positive in data["positives"]:
        found = positive["ent_num"] in search(positive["name"], threshold)
        kinds.setdefault(positive["kind"], [0, 0])[found] += 1
        if not found:
            missed.append(positive)
    fair = [n for n in data["negatives"] if not n["all_words_in_one_entry"]]
    flagged = {n["name"] for n in data["negatives"] if search(n["name"], threshold)}
    caught = sum(hit for _, hit in kinds.values())
    total = sum(miss + hit for miss, hit in kinds.values())
    return {"recall": caught / total, "positives": total,
            "recall_by_kind": {kind: hit / (miss + hit) for kind, (miss, hit) in kinds.items()},
            "fp": sum(1 for n in fair if n["name"] in flagged) / len(fair), "negatives": len(fair),
            "fp_all": len(flagged) / len(data["negatives"]), "flagged": sorted(flagged), "missed": missed}
