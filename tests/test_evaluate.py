"""The scorer on hand-made cases; every expected number was worked out by hand (see comments)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from evaluate import calibration_error, canonical_drug, errors, score, units

# Sentence A: "Aspirin" [0,7], "rash" [15,19], "aspirin" [24,31], "fever" [39,44].
A = "Aspirin caused rash and aspirin caused fever."
# Sentence B: "Cisplatin" [0,9], "nausea" [18,24], "vomiting" [25,33].
B = "Cisplatin induced nausea vomiting."
C = "Methotrexate pneumonitis."          # [0,12], [13,24]
D = "No events were seen with heparin."  # "events" [3,9], "heparin" [25,32]


def pair(drug, ade):
    return {"drug": list(drug), "ade": list(ade)}


GOLD = [
    {"id": "a", "text": A, "pairs": [pair((24, 31), (15, 19)), pair((0, 7), (39, 44))]},  # both drugs -> [0,7]
    {"id": "b", "text": B, "pairs": [pair((0, 9), (18, 24)), pair((0, 9), (25, 33))]},
    {"id": "c", "text": C, "pairs": [pair((0, 12), (13, 24))]},
    {"id": "d", "text": D, "pairs": []},
]
PRED = [
    {"id": "a", "text": A, "pairs": [pair((24, 31), (39, 44)),   # strict hit after canonicalisation
                                     pair((0, 7), (39, 44)),     # the same unit again: collapses
                                     pair((0, 7), (8, 19))]},    # "caused rash": lenient hit only
    {"id": "b", "text": B, "pairs": [pair((0, 9), (18, 33))]},   # overlaps both gold pairs: counts once
    {"id": "c", "text": C, "pairs": []},                         # a miss
    {"id": "d", "text": D, "pairs": [pair((25, 32), (3, 9))]},   # a false positive
]


def test_hand_made_pairs():
    result = score(GOLD, PRED)
    # strict: tp 1 (sentence a); |pred| 2+1+0+1 = 4; |gold| 2+2+1+0 = 5
    s = result["strict"]
    assert (s["tp"], s["n_pred"], s["n_gold"]) == (1, 4, 5)
    assert s["precision"] == pytest.approx(0.25) and s["recall"] == pytest.approx(0.2)
    assert s["f1"] == pytest.approx(2 * 0.25 * 0.2 / 0.45)
    # lenient: tp 2 (a) + 1 (b, one-to-one) = 3
    l = result["lenient"]
    assert (l["tp"], l["n_pred"], l["n_gold"]) == (3, 4, 5)
    assert l["precision"] == pytest.approx(0.75) and l["recall"] == pytest.approx(0.6)
    assert l["f1"] == pytest.approx(2 / 3)


def test_entity_levels():
    drugs = score(GOLD, PRED, level="drugs")
    # gold drugs: a {[0,7]}, b {[0,9]}, c {[0,12]}; pred: a {[0,7]}, b {[0,9]}, d {[25,32]}
    assert (drugs["strict"]["tp"], drugs["strict"]["n_pred"], drugs["strict"]["n_gold"]) == (2, 3, 3)
    ades = score(GOLD, PRED, level="ades")
    # gold ades: a {rash, fever}, b {nausea, vomiting}, c {pneumonitis}; pred: a {fever, "caused rash"},
    # b {"nausea vomiting"}, d {events}. strict: fever. lenient: fever, rash, one of b's.
    assert (ades["strict"]["tp"], ades["lenient"]["tp"], ades["strict"]["n_pred"], ades["strict"]["n_gold"]) == (1, 3, 4, 5)


def test_maximum_matching_beats_greedy():
    text = "abcdefghijklmnopqrstuvwxyz"
    drug = (20, 26)
    gold = [{"id": "x", "text": text, "pairs": [pair(drug, (0, 10)), pair(drug, (5, 15))]}]
    # p1 [4,8] overlaps both golds, p2 [0,3] only the first: greedy p1->g1 would leave p2 unmatched.
    pred = [{"id": "x", "text": text, "pairs": [pair(drug, (4, 8)), pair(drug, (0, 3))]}]
    assert score(gold, pred)["lenient"]["tp"] == 2


def test_typed_entities():
    text = "Cisplatin nephrotoxicity"
    gold = [{"id": "x", "text": text, "entities": [{"span": [0, 9], "type": "Chemical"},
                                                     {"span": [10, 24], "type": "Disease"}]}]
    pred = [{"id": "x", "text": text, "entities": [{"span": [0, 9], "type": "Disease"},
                                                     {"span": [10, 20], "type": "Disease"}]}]
    result = score(gold, pred, level="entities", types=["Chemical", "Disease"])
    assert (result["strict"]["tp"], result["lenient"]["tp"]) == (0, 1)  # a wrong type never matches
    assert result["per_type"]["Chemical"]["lenient"]["n_pred"] == 0
    assert result["per_type"]["Disease"]["lenient"] ["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_empty_everything_is_zero_not_an_error():
    result = score([{"id": "x", "text": "t", "pairs": []}], [{"id": "x", "text": "t", "pairs": []}])
    assert result["strict"]["f1"] == 0.0 and result["lenient"]["precision"] == 0.0


def test_gold_test_split_against_itself(ade_splits):
    test = ade_splits["test"]
    result = score(test, test)
    assert result["strict"]["f1"] == 1.0 and result["lenient"]["f1"] == 1.0
    assert result["strict"]["n_gold"] == 674  # 685 pairs, 674 after drug canonicalisation
    assert sum(len(r["pairs"]) for r in test) == 685


def test_mismatched_ids_are_an_error():
    with pytest.raises(ValueError, match="1 ids only in gold.*'b'.*0 only in predictions"):
        score(GOLD[:2], PRED[:1])


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


EVALUATE = os.path.join(ROOT, "evaluate.py")


def test_cli_prints_one_json_object(tmp_path):
    out = subprocess.run([sys.executable, EVALUATE, write(tmp_path / "g.jsonl", GOLD),
                          write(tmp_path / "p.jsonl", PRED)], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    result = json.loads(out.stdout)
    assert set(result) == {"strict", "lenient"} and result == json.loads(json.dumps(score(GOLD, PRED)))
    assert (result["lenient"]["tp"], result["lenient"]["n_pred"], result["lenient"]["n_gold"]) == (3, 4, 5)
    drugs = subprocess.run([sys.executable, EVALUATE, str(tmp_path / "g.jsonl"), str(tmp_path / "p.jsonl"),
                            "--level=drugs", "--bootstrap=50"], capture_output=True, text=True, check=True)
    assert json.loads(drugs.stdout) == json.loads(json.dumps(score(GOLD, PRED, "drugs", bootstrap=50)))
    assert json.loads(drugs.stdout)["strict"]["tp"] == 2  # the drugs level of test_entity_levels


def test_cli_errors_name_file_and_line(tmp_path):
    gold = write(tmp_path / "g.jsonl", GOLD)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PRED[0]) + "\n{not json\n")
    out = subprocess.run([sys.executable, EVALUATE, gold, str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and f"{bad}:2: not valid JSON" in out.stderr
    outside = write(tmp_path / "o.jsonl", [{"id": "c", "text": C, "pairs": [pair((0, 12), (13, 99))]}])
    out = subprocess.run([sys.executable, EVALUATE, gold, outside], capture_output=True, text=True)
    assert "o.jsonl:1: span [13, 99] is not [start, end) inside the text of 25 characters" in out.stderr


def test_units_canonicalise_drug_case_insensitively():
    assert units(GOLD[0], "pairs") == {((0, 7, "drug"), (15, 19, "ade")), ((0, 7, "drug"), (39, 44, "ade"))}


def test_canonical_drug_is_a_whole_word_at_the_texts_own_offsets():
    text = "İn sodium valproate users, valproate gave rash."  # "İ".lower() is two characters
    assert canonical_drug(text, 27, 36) == (10, 19)  # the first "valproate", where it stands
    text = "Aspirinate levels fell after ASPIRIN; aspirin gave rash."
    assert canonical_drug(text, 38, 45) == (29, 36)  # "ASPIRIN", not the "Aspirin" of "Aspirinate"
    assert canonical_drug("hepatotoxicity of hepato", 18, 24) == (18, 24)
    assert canonical_drug("hepatotoxicity", 0, 6) == (0, 6)  # inside a word only: its first occurrence


def test_errors_agree_with_the_maximum_matching_of_score():
    text = "abcdefghijklmnopqrstuvwxyz"
    drug = (20, 26)
    gold = [{"id": "x", "text": text, "pairs": [pair(drug, (0, 10)), pair(drug, (7, 15))]}]
    # p1 [2,9], first in sorted order, overlaps both golds; p2 [3,6] only the first: greedy in that order,
    # p1 -> g1, would leave p2 and g2 unmatched.
    pred = [{"id": "x", "text": text, "pairs": [pair(drug, (2, 9)), pair(drug, (3, 6))]}]
    [found] = errors(gold, pred)
    assert found["false_positives"] == found["false_negatives"] == []
    assert len(found["boundary"]) == score(gold, pred)["lenient"]["tp"] == 2
    # an identical pair stays matched to itself: one strict hit, the other gold a false negative
    [found] = errors(gold, [{"id": "x", "text": text, "pairs": [pair(drug, (0, 10))]}])
    assert found["boundary"] == [] and found["false_negatives"] == ["uvwxyz -> hijklmno"]


def test_bootstrap_interval_on_a_hand_made_case():
    # 100 sentences with one right pair, 100 with one wrong pair: P = R = F1 = 0.5. Resampling 200
    # sentences, the share of right ones has sd sqrt(0.25 / 200) = 0.035, so the 95 % interval is
    # about 0.5 +- 1.96 * 0.035 = [0.43, 0.57].
    text = "Aspirin caused rash."
    right = {"text": text, "pairs": [pair((0, 7), (15, 19))]}
    wrong = {"text": text, "pairs": [pair((0, 7), (8, 14))]}
    gold = [{"id": str(i), **right} for i in range(200)]
    pred = [{"id": str(i), **(right if i < 100 else wrong)} for i in range(200)]
    result = score(gold, pred, bootstrap=1000)
    for metric in ("precision", "recall", "f1"):
        low, high = result["strict"]["ci95"][metric]
        assert 0.40 < low < 0.46 and 0.54 < high < 0.60, (metric, low, high)
    assert result["strict"]["f1"] == 0.5
    assert score(gold, pred, bootstrap=1000) == result  # seeded: the same interval every time
    # every sentence alike: no spread at all
    assert score(gold, gold, bootstrap=200)["lenient"]["ci95"]["f1"] == [1.0, 1.0]


def test_errors_lists_false_positives_negatives_and_boundaries(tmp_path):
    found = {e["id"]: e for e in errors(GOLD, PRED)}
    assert set(found) == {"a", "b", "c", "d"}
    assert found["a"] == {"id": "a", "text": A, "false_positives": [], "false_negatives": [],
                          "boundary": [{"predicted": "Aspirin -> caused rash", "gold": "Aspirin -> rash"}]}
    assert found["b"]["boundary"] == [{"predicted": "Cisplatin -> nausea vomiting", "gold": "Cisplatin -> nausea"}]
    assert found["b"]["false_negatives"] == ["Cisplatin -> vomiting"]
    assert found["c"]["false_negatives"] == ["Methotrexate -> pneumonitis"]
    assert found["d"]["false_positives"] == ["heparin -> events"]
    out = subprocess.run([sys.executable, EVALUATE, write(tmp_path / "g.jsonl", GOLD),
                          write(tmp_path / "p.jsonl", PRED), "--errors"], capture_output=True, text=True, check=True)
    assert "d\tNo events were seen with heparin.\n  false positive  heparin -> events\n" in out.stdout


def test_calibration_error_on_a_hand_made_case():
    # bin [0.0667, 0.1333): two units at 0.1, one correct: |0.5 - 0.1| = 0.4; bin [0.8667, 0.9333): two at
    # 0.9, both correct: 0.1. Weighted by the units: (2 * 0.4 + 2 * 0.1) / 4 = 0.25
    assert calibration_error([0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1]) == pytest.approx(0.25)
    assert calibration_error([1.0, 0.0], [1, 0]) == 0.0  # 1.0 falls in the last bin, not past it
