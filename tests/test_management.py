"""Management suggestions: every cell of the Krueger grid, IVC and right-heart rules, coverage."""

from __future__ import annotations

import pytest

from cementscan.clinical import parse_symptoms, suggest_management
from cementscan.errors import InputError
from cementscan.findings.model import IvcSummary, PceSummary, RegionSummary, Summary


def _summary(
    *, pce: str | None = "peripheral", ivc: bool = False, heart: bool = False, canal: int = 0
) -> Summary:
    leaks = {"pulmonary_artery": 3} if pce else {}
    if canal:
        leaks["epidural"] = canal
    if ivc:
        leaks["ivc"] = 1
    return Summary(
        treated_levels=(),
        leak_present=bool(leaks),
        leaks=leaks,
        ivc=IvcSummary(assessable=True, present=ivc, length_mm=95.0 if ivc else None),
        right_heart=RegionSummary(assessable=True, present=heart),
        pce=PceSummary(
            assessable=True,
            present=pce is not None,
            count=3 if pce else 0,
            most_proximal=pce or "none",
        ),
    )


@pytest.mark.parametrize(
    ("proximal", "symptoms", "expected", "unconfirmed"),
    [
        ("peripheral", (), "no treatment besides clinical follow-up", False),
        ("central", (), "initial heparin, then 6 months of coumarin", False),
        ("peripheral", ("dyspnea",), "initial heparin, then 6 months of coumarin", False),
        ("central", ("chest_pain",), "embolectomy", True),
    ],
)
def test_krueger_grid(
    proximal: str, symptoms: tuple[str, ...], expected: str, unconfirmed: bool
) -> None:
    management = suggest_management(_summary(pce=proximal), symptoms)
    assert expected in management.suggestion
    assert any("Krueger" in b or "ACEP" in b for b in management.basis)
    assert bool(management.unconfirmed) is unconfirmed
    assert ("[UNCONFIRMED]" in management.suggestion) is unconfirmed
    assert "not a diagnosis" in management.suggestion
    assert management.inputs == {"symptoms": list(symptoms)}


def test_unknown_symptoms_give_both_branches() -> None:
    management = suggest_management(_summary(pce="peripheral"), None)
    assert "symptoms not given" in management.suggestion
    assert "clinical follow-up" in management.suggestion
    assert "coumarin" in management.suggestion
    assert management.inputs == {"symptoms": None}


def test_neurological_symptoms_do_not_make_pce_symptomatic() -> None:
    management = suggest_management(_summary(pce="peripheral"), ("radicular_pain",))
    assert "no treatment besides clinical follow-up" in management.suggestion


def test_ivc_and_right_heart_rules() -> None:
    management = suggest_management(_summary(pce=None, ivc=True, heart=True), ())
    assert "inferior vena cava (95 mm)" in management.suggestion
    assert "retrieval" in management.suggestion
    assert "pericardial effusion" in management.suggestion
    assert any("stent graft" in u for u in management.unconfirmed)  # UNCONFIRMED in the evidence


def test_canal_leak_asks_for_neurological_correlation() -> None:
    quiet = suggest_management(_summary(pce=None, canal=1), ())
    loud = suggest_management(_summary(pce=None, canal=1), ("neurological_deficit",))
    assert "correlate with neurological findings" in quiet.suggestion
    assert "decompression" in loud.suggestion and "decompression" not in quiet.suggestion


def test_lungs_not_covered_cannot_exclude_pce() -> None:
    summary = _summary(pce=None)
    summary = Summary(
        treated_levels=summary.treated_levels,
        leak_present=False,
        leaks={},
        ivc=summary.ivc,
        right_heart=summary.right_heart,
        pce=PceSummary(assessable=False, present=None),
    )
    management = suggest_management(summary, ())
    assert "cannot be excluded" in management.suggestion
    assert "No cement outside the treated vertebrae" in management.suggestion


def test_symptom_parsing() -> None:
    assert parse_symptoms(None) is None
    assert parse_symptoms(None, asymptomatic=True) == ()
    assert parse_symptoms("Dyspnea, chest_pain") == ("dyspnea", "chest_pain")
    with pytest.raises(InputError, match="unknown symptom"):
        parse_symptoms("dyspnoea")
