"""The findings of a study in a radiologist's words (modelled on the reference case report)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LEVEL_ORDER = (
    *[f"C{i}" for i in range(1, 8)],
    *[f"T{i}" for i in range(1, 14)],
    *[f"L{i}" for i in range(1, 7)],
    "S1",
)
REGION_NAMES = {
    "neck": "neck",
    "chest": "chest",
    "abdomen": "abdomen",
    "pelvis": "pelvis",
    "lumbar_spine": "lumbar spine",
    "thoracic_spine": "thoracic spine",
}
PHASE_NAMES = {
    "native": "non-contrast",
    "arterial": "arterial phase (e.g. CT pulmonary angiography)",
    "portal_venous": "portal venous phase",
    "unknown": "contrast phase unknown",
}
# Where each extra-osseous category goes, as a radiologist would write it ("leakage into ...").
INTO = {
    "disc": "the adjacent intervertebral disc",
    "epidural": "the spinal canal (epidural space)",
    "foraminal": "the neural foramen",
    "paravertebral_soft_tissue": "the paravertebral soft tissues",
    "paravertebral_vein": "the paravertebral venous plexus",
    "azygos": "the azygos vein",
    "ivc": "the inferior vena cava",
    "svc": "the superior vena cava",
    "right_heart": "the right heart",
    "other": "the extra-osseous soft tissues",
}
YEOM_NAMES = {
    "B": "Yeom type B, basivertebral",
    "S": "Yeom type S, segmental vein",
    "C": "Yeom type C, cortical defect",
    "D": "Yeom type D, disc",
}
LOW_CONFIDENCE = 0.5
LEVEL_CONFIDENCE_OK = 0.7


@dataclass(frozen=True)
class ReportText:
    """The report's words, section by section (each a list of sentences or lines)."""

    technique: list[str]
    findings: list[str]
    negatives: list[str]
    impression: list[str]
    limitations: list[str]

    def plain(self) -> str:
        """The whole text as plain text (for the PDF fallback, SR and the console)."""
        parts = [
            ("TECHNIQUE", self.technique),
            ("FINDINGS", self.findings + self.negatives),
            ("IMPRESSION", self.impression),
            ("CONFIDENCE AND LIMITATIONS", self.limitations),
        ]
        return "\n\n".join(f"{h}\n" + "\n".join(lines) for h, lines in parts if lines)


def _level_key(level: str | None) -> int:
    return LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER)


def level_range(levels: Sequence[str]) -> str:
    """["L4", "L5"] -> "L4–L5"; ["L1", "L4"] -> "L1 and L4"; consecutive runs are joined."""
    known = sorted(set(levels), key=_level_key)
    runs: list[list[str]] = []
    for lv in known:
        if runs and _level_key(lv) == _level_key(runs[-1][-1]) + 1:
            runs[-1].append(lv)
        else:
            runs.append([lv])
    words = [r[0] if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs]
    return _join(words)


def _join(words: Sequence[str], conj: str = "and") -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {conj} " + words[-1]


def _ml(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f} mL" if v >= 0.1 else f"{v:.2f} mL"


def _where(f: dict[str, Any]) -> str:
    """Where a finding sits: 'at L4' or '2 bodies above the treated body' or ''."""
    if f.get("level"):
        return f"at the level of {f['level']}"
    off = f.get("level_offset")
    if off:
        n = abs(int(off))
        return f"{n} vertebral bod{'y' if n == 1 else 'ies'} {'above' if off > 0 else 'below'} the treated body"
    return ""


def _side(f: dict[str, Any]) -> str:
    side = f.get("side")
    return "" if side in (None, "midline") else f"{side} "


def _by_id(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(f["id"]): f for f in doc.get("findings", [])}


def chain_root(f: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Follow connected_to upstream; the intravertebral finding it reaches, else None (free)."""
    seen = {int(f["id"])}
    cur = f
    while cur.get("connected_to") is not None:
        nxt = by_id.get(int(cur["connected_to"]))
        if nxt is None or int(nxt["id"]) in seen:
            return None
        seen.add(int(nxt["id"]))
        cur = nxt
        if cur.get("category") == "intravertebral":
            return cur
    return None


def _chain(f: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The finding and everything upstream of it, vertebra first."""
    out = [f]
    seen = {int(f["id"])}
    cur = f
    while cur.get("connected_to") is not None:
        nxt = by_id.get(int(cur["connected_to"]))
        if nxt is None or int(nxt["id"]) in seen:
            break
        seen.add(int(nxt["id"]))
        out.append(nxt)
        cur = nxt
    return out[::-1]


def _treated(doc: dict[str, Any]) -> list[str]:
    tl = doc["summary"].get("treated_levels", [])
    intra = [f for f in doc.get("findings", []) if f["category"] == "intravertebral"]
    if not tl and not intra:
        return []
    names = [t["level"] for t in tl if t.get("level")]
    sides = {f.get("side") for f in intra}
    aspect = ""
    if len(sides) == 1 and next(iter(sides)) in ("right", "left"):
        aspect = f"the {next(iter(sides))} aspect of "
    if names:
        bodies = f"{aspect}the {_join(sorted(names, key=_level_key))} vertebral bod" + (
            "ies" if len(names) > 1 else "y"
        )
        vols = ", ".join(f"{t['level']} {_ml(t['cement_volume_ml'])}" for t in tl if t.get("level"))
        return [
            f"Status post vertebral augmentation at {level_range(names)}: hyperdense bone cement "
            f"within {bodies} (cement volume {vols})."
        ]
    offs = [t for t in tl if not t.get("level")]
    vols = ", ".join(_ml(t["cement_volume_ml"]) for t in offs)
    return [
        f"Status post vertebral augmentation of {len(tl) or len(intra)} vertebral "
        f"bod{'ies' if (len(tl) or len(intra)) > 1 else 'y'} (levels not numbered; cement volume "
        f"{vols or _ml(sum(f['volume_ml'] for f in intra))})."
    ]


def _venous_and_local(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    """One sentence per leak path (vertebra -> ... -> furthest piece), then unconnected leaks."""
    leaks = [
        f
        for f in by_id.values()
        if f["category"] not in ("intravertebral", "pulmonary_artery", "right_heart")
    ]
    downstream = {int(f["connected_to"]) for f in by_id.values() if f.get("connected_to")}
    ends = [f for f in leaks if int(f["id"]) not in downstream]
    ivc_sum = doc["summary"].get("ivc", {})
    out: list[str] = []
    for end in sorted(ends, key=lambda f: int(f["id"])):
        chain = _chain(end, by_id)
        root = chain[0] if chain[0]["category"] == "intravertebral" else None
        pieces = [c for c in chain if c["category"] != "intravertebral"]
        first = pieces[0]
        yeom = next(
            (YEOM_NAMES[c["yeom_type"]] for c in pieces if c.get("yeom_type") in YEOM_NAMES), ""
        )
        src = (
            f"from the {root['level']} vertebral body"
            if root and root.get("level")
            else "from the treated vertebral body"
            if root
            else ""
        )
        where = _where(first)
        s = "Cement leakage"
        if src:
            s += f" {src}"
        into = INTO.get(first["category"], first["category"])
        if first["category"] in ("paravertebral_vein", "paravertebral_soft_tissue", "foraminal"):
            into = into.replace("the ", f"the {_side(first)}", 1)  # "the right paravertebral ..."
        s += f" into {into}"
        if where and first["category"] != "ivc":
            s += f" {where}"
        if yeom:
            s += f" ({yeom})"
        if first["category"] == "epidural" and first.get("canal_compromise_pct") is not None:
            s += f", narrowing the canal by about {first['canal_compromise_pct']:.0f}%"
        prev = first
        for nxt in pieces[1:]:
            s += (
                f", and from {INTO.get(prev['category'], prev['category'])} into "
                f"{INTO.get(nxt['category'], nxt['category'])}"
            )
            prev = nxt
        last = pieces[-1]
        if last["category"] == "ivc":
            top = ivc_sum.get("cranial_extent_level")
            if ivc_sum.get("extends_beyond_fov"):
                s += ", extending cranially to the upper edge of the scan (its full extent is not covered)"
            elif top:
                s += f", extending cranially to the level of {top}"
        out.append(s + ".")
        for piece in pieces:
            if piece["category"] == "ivc":
                out.append(_ivc_fragment(piece, by_id, ivc_sum))
    return out


def _ivc_fragment(f: dict[str, Any], by_id: dict[int, dict[str, Any]], ivc: dict[str, Any]) -> str:
    root = chain_root(f, by_id)
    length = ivc.get("length_mm") or f.get("length_mm")
    span = ""
    if ivc.get("caudal_extent_level") and ivc.get("cranial_extent_level"):
        span = f" from {ivc['caudal_extent_level']} to {ivc['cranial_extent_level']}"
    s = f"The IVC cement measures about {float(length or 0.0):.0f} mm in length{span}"
    if root is not None:
        lv = f" at {root['level']}" if root.get("level") else ""
        s += (
            f" and is continuous with the cement tract back to the treated vertebral body{lv} "
            "(anchored, not a free fragment)."
        )
    else:
        s += (
            "; it is not continuous with the vertebral cement (free fragment), so it may "
            "migrate to the right heart or pulmonary arteries."
        )
    return s


def _shapes(items: Sequence[dict[str, Any]]) -> str:
    kinds = [k for k in ("linear", "nodular") if any(f["shape"] == k for f in items)]
    if any(f["shape"] in ("amorphous", "cast") for f in items):
        kinds.append("branching/amorphous")
    return _join(kinds) or "hyperdense"


def _pce(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    pce = doc["summary"].get("pce", {})
    if not pce.get("present"):
        return []
    emboli = [f for f in by_id.values() if f["category"] == "pulmonary_artery"]
    n = int(pce.get("count") or len(emboli))
    zone = pce.get("zone_predominance")
    pred = pce.get("predominance")
    lat = pce.get("laterality")
    where = ""
    zone_txt = f"{zone} zone" if zone in ("upper", "middle", "lower") else ""
    if pred in ("right", "left"):
        where = (
            f"predominantly in the {zone_txt} of the {pred} lung"
            if zone_txt
            else f"predominantly in the {pred} lung"
        )
    elif lat == "bilateral":
        where = f"in both lungs, predominantly in the {zone_txt}s" if zone_txt else "in both lungs"
    elif lat in ("right", "left"):
        where = f"in the {zone_txt} of the {lat} lung" if zone_txt else f"in the {lat} lung"
    counts = Counter(f.get("side") for f in emboli)
    split = ""
    if lat == "bilateral" and emboli:
        split = f" ({counts.get('right', 0)} right, {counts.get('left', 0)} left)"
    noun = "focus" if n == 1 else "foci"
    s = (
        f"{n} {_shapes(emboli)} hyperdense {noun} along pulmonary arterial branches"
        f"{', ' + where if where else ''}{split}, consistent with pulmonary cement embolism."
    )
    proximal = pce.get("most_proximal")
    extra = []
    if proximal == "central":
        extra.append("at least one embolus is central (lobar or more proximal)")
    elif proximal == "peripheral":
        extra.append("all are peripheral (segmental or smaller); no central embolus")
    if pce.get("max_length_mm"):
        extra.append(f"the longest measures about {float(pce['max_length_mm']):.0f} mm")
    if extra:
        s += " " + "; ".join(extra).capitalize() + "."
    return [s]


def _heart(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    rh = doc["summary"].get("right_heart", {})
    if not rh.get("present"):
        return []
    items = [f for f in by_id.values() if f["category"] == "right_heart"]
    longest = max((float(f.get("length_mm") or 0) for f in items), default=0.0)
    n = len(items) or 1
    s = (
        f"Cement within the right heart ({n} fragment{'s' if n > 1 else ''}"
        + (f", the longest about {longest:.0f} mm" if longest else "")
        + "). Look for pericardial effusion and signs of cardiac perforation."
    )
    return [s]


def _covered(doc: dict[str, Any]) -> list[str]:
    regions: list[str] = []
    for inp in doc.get("inputs", []):
        for r in inp.get("coverage", []):
            if r not in regions:
                regions.append(r)
    return regions


def _negatives(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    """What was looked for and not found, limited to what the scan covered."""
    s = doc["summary"]
    cats = {f["category"] for f in by_id.values()}
    regions = set(_covered(doc))
    spine = bool(regions & {"lumbar_spine", "thoracic_spine"}) or not regions
    absent: list[str] = []
    if spine:
        for cat, name in (
            ("disc", "intervertebral discs"),
            ("epidural", "spinal canal"),
            ("foraminal", "neural foramina"),
            ("paravertebral_soft_tissue", "paravertebral soft tissues"),
            ("paravertebral_vein", "paravertebral veins"),
        ):
            if cat not in cats:
                absent.append(name)
    if s.get("ivc", {}).get("assessable") and not s["ivc"].get("present"):
        absent.append("inferior vena cava")
    if "chest" in regions:
        for cat, name in (("azygos", "azygos vein"), ("svc", "superior vena cava")):
            if cat not in cats:
                absent.append(name)
    if s.get("right_heart", {}).get("assessable") and not s["right_heart"].get("present"):
        absent.append("right heart")
    if s.get("pce", {}).get("assessable") and not s["pce"].get("present"):
        absent.append("pulmonary arteries")
    out = []
    treated = bool(s.get("treated_levels")) or "intravertebral" in cats
    if not s.get("leak_present"):
        if treated:
            out.append("No cement outside the treated vertebrae.")
        else:
            out.append(
                "No bone cement was found: no augmented vertebra and no cement outside the "
                "vertebrae."
            )
    if absent:
        out.append(f"No cement in the {_join(absent, 'or')}.")
    if not s.get("pce", {}).get("assessable"):
        out.append(
            "The lungs were not (fully) included in the scan: pulmonary cement embolism cannot "
            "be excluded; a chest CT (non-contrast, or reviewed in a wide window) is needed to "
            "assess the pulmonary arteries."
        )
    if not s.get("right_heart", {}).get("assessable") and s.get("pce", {}).get("assessable"):
        out.append("The heart was not included: cement in the right heart cannot be excluded.")
    if not s.get("ivc", {}).get("assessable"):
        out.append("The abdominal IVC was not included: IVC cement cannot be excluded.")
    names = [REGION_NAMES.get(r, r) for r in _covered(doc)]
    if names:
        out.append(f"The scan covered the {_join(names)}.")
    return out


def _technique(doc: dict[str, Any]) -> list[str]:
    out = []
    for n, inp in enumerate(doc.get("inputs", [])):
        cov = _join([REGION_NAMES.get(r, r) for r in inp.get("coverage", [])]) or "region unknown"
        thick = inp.get("slice_thickness_mm") or (inp.get("spacing_mm") or [None] * 3)[2]
        phase = PHASE_NAMES.get(inp.get("contrast_phase", "unknown"), "contrast phase unknown")
        thick_txt = f"{float(thick):.1f} mm slices" if thick else "slice thickness unknown"
        out.append(f"Series {n + 1}: CT of the {cov}, {phase}, {thick_txt}.")
    for sk in doc.get("skipped_series", []):
        out.append(f"Not analysed: series {sk['series_uid']} ({sk['reason']}).")
    return out


def _impression(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    s = doc["summary"]
    lines = []
    levels = [t["level"] for t in s.get("treated_levels", []) if t.get("level")]
    if levels:
        lines.append(f"Status post vertebral augmentation at {level_range(levels)}.")
    elif s.get("treated_levels"):
        lines.append("Status post vertebral augmentation (levels not numbered).")
    ivc = s.get("ivc", {})
    if ivc.get("present"):
        ivc_f = [f for f in by_id.values() if f["category"] == "ivc"]
        anchored = bool(ivc_f) and all(chain_root(f, by_id) is not None for f in ivc_f)
        top = (
            "beyond the scan's upper edge"
            if ivc.get("extends_beyond_fov")
            else f"to {ivc['cranial_extent_level']}"
            if ivc.get("cranial_extent_level")
            else ""
        )
        length = f", {float(ivc['length_mm']):.0f} mm" if ivc.get("length_mm") else ""
        lines.append(
            f"Venous cement leakage into the inferior vena cava{(' extending ' + top) if top else ''}"
            f"{length}, {'anchored to the vertebral tract' if anchored else 'free fragment'}."
        )
    else:
        other = {k: v for k, v in s.get("leaks", {}).items() if v and k != "ivc"}
        if other:
            lines.append(
                "Cement leakage: "
                + ", ".join(
                    f"{INTO.get(k, k).removeprefix('the ')} ({v})" for k, v in other.items()
                )
                + "."
            )
    if s.get("right_heart", {}).get("present"):
        lines.append("Cement in the right heart: look for pericardial effusion and perforation.")
    pce = s.get("pce", {})
    if pce.get("present"):
        bits = [f"{pce.get('count', 0)} {pce.get('most_proximal', '')} emboli".replace("  ", " ")]
        if pce.get("laterality") == "bilateral":
            bits.append("bilateral")
        if pce.get("predominance") in ("right", "left"):
            bits.append(f"{pce['predominance']}-predominant")
        if pce.get("zone_predominance") in ("upper", "middle", "lower"):
            bits.append(f"{pce['zone_predominance']} zone")
        lines.append(f"Pulmonary cement embolism ({', '.join(bits)}).")
    elif not pce.get("assessable"):
        lines.append("Lungs not scanned: pulmonary cement embolism cannot be excluded.")
    if not s.get("leak_present"):
        lines.append(
            "No cement outside the treated vertebrae in the region scanned."
            if levels or s.get("treated_levels")
            else "No bone cement found in the region scanned."
        )
    return lines[:4]


def _limitations(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> list[str]:
    out = []
    names = [REGION_NAMES.get(r, r) for r in _covered(doc)]
    if names:
        out.append(
            f"Coverage: {_join(names)}; cement beyond the scanned region cannot be assessed."
        )
    not_assessable = [
        name
        for key, name in (("ivc", "IVC"), ("right_heart", "right heart"), ("pce", "lungs"))
        if not doc["summary"].get(key, {}).get("assessable")
    ]
    if not_assessable:
        out.append(f"Not assessable on this scan: {_join(not_assessable)}.")
    for n, inp in enumerate(doc.get("inputs", [])):
        thick = inp.get("slice_thickness_mm") or (inp.get("spacing_mm") or [None] * 3)[2]
        if thick and float(thick) > 3.0:
            out.append(
                f"Series {n + 1} has {float(thick):.1f} mm slices: small emboli (under about "
                f"{float(thick):.0f} mm) may be missed; thin (1-3 mm) reconstructions are preferred."
            )
        elif thick:
            out.append(
                f"Series {n + 1}: {float(thick):.1f} mm slices; emboli under about 2 mm across may "
                "be missed."
            )
        phase = inp.get("contrast_phase", "unknown")
        if phase == "arterial":
            out.append(
                f"Series {n + 1} is contrast-enhanced in the arterial phase (CT pulmonary "
                "angiography): cement in opacified pulmonary arteries is easy to miss in a "
                "soft-tissue window; review in a wide (bone) window. Non-contrast or portal-venous "
                "CT shows cement emboli better."
            )
        elif phase == "portal_venous":
            out.append(
                f"Series {n + 1} is contrast-enhanced (portal venous phase): dense contrast in "
                "veins can mimic or hide venous cement; such veins are reported as not assessable."
            )
        elif phase == "unknown":
            out.append(
                f"Series {n + 1}: contrast phase unknown. If this is a CT pulmonary angiogram, "
                "cement in the pulmonary arteries is easy to miss in a soft-tissue window."
            )
    anat = doc.get("anatomy", {})
    anchor = anat.get("level_anchor", "none")
    conf = float(anat.get("level_confidence") or 0.0)
    anchor_txt = {
        "sacrum": "counted up from the sacrum",
        "last_rib": "counted from the last rib-bearing vertebra",
        "first_rib": "counted down from the first rib",
        "imported": "taken from imported segmentation",
    }
    if anchor == "none" or not anat.get("levels"):
        out.append(
            "Vertebral levels could not be numbered (no anchor found): positions are given "
            "relative to the treated vertebra; count the levels on the images."
        )
    else:
        s = f"Vertebral levels {anchor_txt.get(anchor, anchor)} (confidence {conf:.2f})"
        if conf < LEVEL_CONFIDENCE_OK:
            s += ": numbering uncertain (transitional vertebrae, 11 or 13 rib pairs) - verify"
        out.append(s + ".")
    low = [f for f in by_id.values() if float(f.get("confidence", 1.0)) < LOW_CONFIDENCE]
    if low:
        out.append(
            "Low-confidence findings (verify on the images): "
            + ", ".join(f"#{f['id']} {f['category']} ({float(f['confidence']):.2f})" for f in low)
            + "."
        )
    prior = [f for f in by_id.values() if f.get("category_basis") == "prior"]
    if prior:
        out.append(
            f"The category of {len(prior)} finding(s) is inferred from position priors because "
            "anatomy could not be segmented there."
        )
    out += [str(w) for w in doc.get("warnings", [])]
    return out


def report_text(doc: dict[str, Any]) -> ReportText:
    """The report's words for a findings.json dict."""
    by_id = _by_id(doc)
    findings = _treated(doc) + _venous_and_local(doc, by_id) + _heart(doc, by_id) + _pce(doc, by_id)
    return ReportText(
        technique=_technique(doc),
        # Pieces of one cast cut by coarse compartment edges can describe the same route twice.
        findings=list(dict.fromkeys(findings)),
        negatives=_negatives(doc, by_id),
        impression=_impression(doc, by_id),
        limitations=_limitations(doc, by_id),
    )
