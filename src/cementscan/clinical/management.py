"""Management suggestion from the study summary and the clinician's symptom input, each statement
with its source (clinical-evidence.md §2.4 and §3). Decision support for research use, not a diagnosis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cementscan.errors import InputError
from cementscan.findings.model import Management, Summary

# Symptoms that make PCE "symptomatic" in the sense of Krueger 2009 (cardiopulmonary), plus the
# neurological ones a canal or foraminal leak can cause.
CARDIOPULMONARY_SYMPTOMS = (
    "dyspnea",
    "chest_pain",
    "hemoptysis",
    "hypotension",
    "tachycardia",
    "hypoxia",
    "syncope",
    "cough",
)
NEUROLOGICAL_SYMPTOMS = ("radicular_pain", "neurological_deficit", "paresis", "numbness")
KNOWN_SYMPTOMS = CARDIOPULMONARY_SYMPTOMS + NEUROLOGICAL_SYMPTOMS

KRUEGER = "Krueger et al., Eur Spine J 2009;18:1257-1265"
ACEP = "Adams & Effron, ACEP Now (summary of the Krueger 2009 algorithm)"
KONG = "Kong et al., Ann Transl Med (c. 2019)"
EJVES = "Eur J Vasc Endovasc Surg 2006;31:558-561"
VENOUS_2024 = "Venous 2024 meeting abstract (20-article review)"
PERFORATION = "case reports of right-ventricular perforation (Kim 2018; Wu 2024; Pigna 2020)"
YEOM = "Yeom et al., J Bone Joint Surg Br 2003;85:83-89"
JOSR_2019 = "J Orthop Surg Res 2019 (s13018-019-1459-4)"
CASE_REPORT = "index case report (case-report.txt)"
DISCLAIMER = "Decision support for research use, not a diagnosis."


@dataclass(frozen=True)
class Statement:
    text: str
    source: str
    unconfirmed: bool = False  # clinical-evidence.md marks the evidence UNCONFIRMED


def parse_symptoms(text: str | None, asymptomatic: bool = False) -> tuple[str, ...] | None:
    """``--symptoms a,b`` -> ("a", "b"); ``--asymptomatic`` -> (); neither -> None (unknown).

    Unknown words are refused (exit 2) so that a typo cannot silently make a patient asymptomatic.
    """
    if asymptomatic:
        return ()
    if text is None:
        return None
    symptoms = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    unknown = [s for s in symptoms if s not in KNOWN_SYMPTOMS]
    if unknown:
        raise InputError(
            f"unknown symptom(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SYMPTOMS)}"
        )
    return symptoms


def _pce_statements(summary: Summary, symptoms: tuple[str, ...] | None) -> list[Statement]:
    pce = summary.pce
    if pce.assessable is False or pce.present is None:
        return [
            Statement(
                "The lungs were not assessable on this scan: pulmonary cement embolism cannot be "
                "excluded.",
                "DESIGN.md §4 (absence depends on coverage)",
            )
        ]
    if not pce.present:
        return []
    central = pce.most_proximal == "central"
    where = "central" if central else "peripheral"
    if symptoms is None:
        return [
            Statement(
                f"Pulmonary cement embolism ({where}); symptoms not given. If asymptomatic: "
                + (
                    "anticoagulation as for thrombotic pulmonary embolism (initial heparin, then "
                    "6 months of coumarin)."
                    if central
                    else "no treatment besides clinical follow-up."
                )
                + " If symptomatic: "
                + (
                    "consider surgical removal (embolectomy)."
                    if central
                    else "anticoagulation as for thrombotic pulmonary embolism (initial heparin, "
                    "then 6 months of coumarin)."
                ),
                f"{KRUEGER}; {ACEP}" if central else KRUEGER,
                unconfirmed=central,
            )
        ]
    symptomatic = any(s in CARDIOPULMONARY_SYMPTOMS for s in symptoms)
    if not symptomatic and not central:
        return [
            Statement(
                "Asymptomatic peripheral pulmonary cement embolism: no treatment besides clinical "
                "follow-up.",
                KRUEGER,
            )
        ]
    if symptomatic and central:
        return [
            Statement(
                "Symptomatic central pulmonary cement embolism: consider surgical removal "
                "(embolectomy).",
                ACEP,
                unconfirmed=True,
            )
        ]
    state = "Symptomatic peripheral" if symptomatic else "Asymptomatic central"
    return [
        Statement(
            f"{state} pulmonary cement embolism: proceed as for thrombotic pulmonary embolism - "
            "initial heparin, then 6 months of coumarin.",
            KRUEGER,
        )
    ]


def _venous_statements(summary: Summary) -> list[Statement]:
    out: list[Statement] = []
    if summary.ivc.present:
        length = f" ({summary.ivc.length_mm:.0f} mm)" if summary.ivc.length_mm else ""
        out.append(
            Statement(
                f"Cement in the inferior vena cava{length}: a large, spike- or hook-shaped or "
                "mobile fragment risks migrating to the heart or pulmonary arteries; percutaneous "
                "retrieval has been recommended for an IVC cement spike. No size or length "
                "threshold for retrieval has been published.",
                f"{KONG}; {EJVES}",
            )
        )
        out.append(
            Statement(
                "Options reported: observation, anticoagulation, snare retrieval, IVC filter, "
                "hybrid open-endovascular removal.",
                VENOUS_2024,
            )
        )
        out.append(
            Statement(
                "Exclusion of the IVC fragment with a stent graft has been described.",
                CASE_REPORT,
                unconfirmed=True,
            )
        )
    if summary.right_heart.present:
        out.append(
            Statement(
                "Cement in the right heart: look for pericardial effusion and perforation; open-"
                "heart surgery is preferred for intracardiac cement, percutaneous retrieval when "
                "the surgical risk is high.",
                f"{KONG}; {PERFORATION}",
            )
        )
    return out


def _canal_statements(summary: Summary, symptoms: tuple[str, ...] | None) -> list[Statement]:
    canal = summary.leaks.get("epidural", 0) + summary.leaks.get("foraminal", 0)
    if not canal:
        return []
    neuro = symptoms is not None and any(s in NEUROLOGICAL_SYMPTOMS for s in symptoms)
    text = "Cement in the spinal canal or a neural foramen: correlate with neurological findings"
    if neuro:
        text += "; neurological symptoms were given - canal leaks have needed decompression"
    return [Statement(text + ".", f"{YEOM}; {JOSR_2019}")]


def suggest_management(summary: Summary, symptoms: Sequence[str] | None) -> Management:
    """The management suggestion for a study; ``symptoms`` None = unknown, () = asymptomatic."""
    given = None if symptoms is None else tuple(symptoms)
    statements = (
        _pce_statements(summary, given)
        + _venous_statements(summary)
        + _canal_statements(summary, given)
    )
    if not summary.leak_present:
        statements.append(
            Statement(
                "No cement outside the treated vertebrae was found in the region scanned: these "
                "findings call for no action.",
                "cementscan findings",
            )
        )
    text = " ".join(s.text + (" [UNCONFIRMED]" if s.unconfirmed else "") for s in statements)
    return Management(
        suggestion=f"{text} {DISCLAIMER}".strip(),
        basis=tuple(dict.fromkeys(s.source for s in statements)),
        inputs={"symptoms": None if given is None else list(given)},
        unconfirmed=tuple(s.text for s in statements if s.unconfirmed),
    )
