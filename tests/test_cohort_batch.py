"""``cementscan batch``: discovery, every study done once, resume after a kill, idempotent reruns,
failures recorded (bad input, timeout, crash), symptoms by CSV, and the Dask cluster path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from cementscan.cohort.batch import read_symptoms_csv
from cementscan.cohort.database import DEFAULT_DB_FILE, ResultsDatabase
from cementscan.cohort.discover import discover_studies
from cementscan.cohort.records import StudyInput
from cementscan.cohort.runner import (
    MARKER_FILE,
    STUDIES_DIR,
    ForkedStudy,
    StudyTask,
    options_digest,
    read_marker,
    study_dir_name,
)
from cementscan.errors import InputError
from cementscan.io.dicom_write import write_dicom_series
from cementscan.io.volume import CTVolume, SourceInfo
from cementscan.synth.cohort import make_cohort

N_PHANTOMS = 10  # + two bad inputs that are analysed and refused: 12 studies
# The quicker presets (the negative control is a whole torso); reference-case has two series.
TEST_PRESETS = ("canal-leak", "reference-case", "thoracic-azygos", "right-heart")
KILL_AFTER_RECORDED = 2
# Differ between runs of the same study: not part of the comparison of two databases.
VOLATILE_EXTRA = ("output_dir", "host", "duration_s", "analysed_at", "run_id")


def markers(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Study key -> its outcome marker (with the marker file's mtime)."""
    found = {}
    for path in sorted((out_dir / STUDIES_DIR).glob(f"*/{MARKER_FILE}")):
        marker = read_marker(path.parent)
        assert marker is not None, path
        found[marker["key"]] = {**marker, "mtime_ns": path.stat().st_mtime_ns}
    return found


def load_records(out_dir: Path) -> dict[str, Any]:
    with ResultsDatabase.open(None, out_dir) as database:
        return {r.key: r for r in database.load_cohort()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cohort") / "root"
    truth = make_cohort(root, N_PHANTOMS, seed=6, presets=TEST_PRESETS)
    by_key = {s["key"]: s for s in truth["studies"]}
    volume_key = next(k for k, s in by_key.items() if s["format"] == "volume" and s["preset"])
    patient_id = next(s["patient_id"] for s in truth["studies"] if s["patient_id"])
    symptoms_csv = root.parent / "symptoms.csv"
    symptoms_csv.write_text(
        "study,patient_id,symptoms\n"
        f'{volume_key},,"dyspnea, chest_pain"\n'
        f",{patient_id},radicular_pain\n"
        "no/such/study,,asymptomatic\n"
    )
    return {
        "root": root,
        "truth": truth,
        "by_key": by_key,
        "csv": symptoms_csv,
        "volume_key": volume_key,
        "patient_id": patient_id,
    }


@pytest.fixture(scope="module")
def local_run(cohort: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A batch killed (SIGKILL, like a power cut) after it recorded some studies, then rerun."""
    out = tmp_path_factory.mktemp("local") / "out"
    args = ["batch", cohort["root"], "--out", out, "--workers", "2"]
    args += ["--symptoms-csv", cohort["csv"], "--no-progress"]
    batch = subprocess.Popen(
        [sys.executable, "-m", "cementscan.cli.main", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes its children too
    )
    recorded: dict[str, Any] = {}
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and batch.poll() is None:
            if len(markers(out)) >= KILL_AFTER_RECORDED:
                with ResultsDatabase.open(None, out) as database:
                    recorded = database.study_states()
                if len(recorded) >= KILL_AFTER_RECORDED:
                    break
            time.sleep(0.3)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)
        _, err = batch.communicate()
    assert len(recorded) >= KILL_AFTER_RECORDED, err.decode()
    with ResultsDatabase.open(None, out) as database:
        recorded = database.study_states()  # what the killed run had recorded when it died
    assert len(recorded) < len(cohort["by_key"]), "the batch finished before it was killed"
    killed = markers(out)
    code, stdout, stderr = run_cli(*args)
    return {"out": out, "recorded": recorded, "killed": killed, "code": code, "stdout": stdout,
            "stderr": stderr, "args": args}  # fmt: skip


def test_every_study_done_once_with_its_status(
    cohort: dict[str, Any], local_run: dict[str, Any]
) -> None:
    assert local_run["code"] == 0, local_run["stderr"]
    records = load_records(local_run["out"])
    assert set(records) == set(cohort["by_key"])
    assert set(markers(local_run["out"])) == set(cohort["by_key"])
    for key, expected in cohort["by_key"].items():
        record = records[key]
        assert record.status == expected["expected_status"], (key, record.error)
        if record.status == "ok":
            findings = local_run["out"] / STUDIES_DIR / study_dir_name(key) / "findings.json"
            assert record.document == json.loads(findings.read_text())
            assert record.extra["fingerprint"]
        else:
            assert record.document is None
            assert key in record.error  # the one-line input error names the file
    # The bad inputs did not stop the batch: they are the smallest, so they ran last.
    assert "bad/truncated.nii.gz: input_error" in local_run["stderr"]
    assert "input_error" in local_run["stdout"]


def test_discovery_is_printed_before_the_run(
    cohort: dict[str, Any], local_run: dict[str, Any]
) -> None:
    stdout = local_run["stdout"]
    assert f"found {len(cohort['by_key'])} studies" in stdout
    for skipped in cohort["truth"]["skipped"]:
        assert f"skipped {skipped}:" in stdout
    assert "patient_mr/study_01: modality MR, not CT" in stdout
    assert stdout.index("skipped README.txt") < stdout.index("to analyse")
    assert "symptoms file: no study matches 1 of its entries (no/such/study)" in stdout


def test_resume_after_kill_did_not_reanalyse_finished_studies(local_run: dict[str, Any]) -> None:
    killed, final = local_run["killed"], markers(local_run["out"])
    assert set(local_run["recorded"]) <= set(killed)
    for key, marker in killed.items():
        # Finished in the killed run (run 1): the rerun kept its outputs as they were.
        assert final[key]["run_id"] == 1
        assert final[key]["mtime_ns"] == marker["mtime_ns"]
    rerun = {key for key, marker in final.items() if marker["run_id"] == 2}
    assert rerun == set(final) - set(killed)
    records = load_records(local_run["out"])
    assert {k for k, r in records.items() if r.extra["run_id"] == 1} == set(local_run["recorded"])
    ingested = len(killed) - len(local_run["recorded"])
    assert (
        f"{ingested} recorded from existing outputs, {len(rerun)} to analyse"
        in (local_run["stdout"])
    )
    assert not [p for p in (local_run["out"] / STUDIES_DIR).iterdir() if p.name.startswith(".")]


def test_patients_get_one_pseudonym_each(cohort: dict[str, Any], local_run: dict[str, Any]) -> None:
    records = load_records(local_run["out"])
    by_patient: dict[str, set[str]] = defaultdict(set)
    for key, study in cohort["by_key"].items():
        by_patient[study["patient"]].add(records[key].patient_pseudonym)
    assert all(len(pseudonyms) == 1 for pseudonyms in by_patient.values())
    assert len({p for ps in by_patient.values() for p in ps}) == len(by_patient)
    assert any(len([s for s in cohort["by_key"].values() if s["patient"] == p]) > 1
               for p in by_patient)  # fmt: skip


def test_symptoms_csv_reaches_the_management_inputs(
    cohort: dict[str, Any], local_run: dict[str, Any]
) -> None:
    records = load_records(local_run["out"])
    for key, study in cohort["by_key"].items():
        if records[key].status != "ok":
            continue
        symptoms = records[key].document["management"]["inputs"]["symptoms"]
        if key == cohort["volume_key"]:
            assert symptoms == ["dyspnea", "chest_pain"]
        elif study["patient_id"] == cohort["patient_id"]:
            assert symptoms == ["radicular_pain"]
        else:
            assert symptoms is None


def test_rerun_is_idempotent_and_redoes_only_changed_inputs(
    cohort: dict[str, Any], local_run: dict[str, Any]
) -> None:
    before = markers(local_run["out"])
    code, stdout, _ = run_cli(*local_run["args"])
    assert code == 0
    assert f"{len(before)} unchanged (skipped), 0 recorded from existing outputs, 0 to analyse" in (
        stdout
    )
    assert markers(local_run["out"]) == before
    # A changed input (new modification time) is analysed again, and only that one.
    changed = cohort["root"] / "bad" / "radiograph.nii.gz"
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    code, stdout, _ = run_cli(*local_run["args"])
    assert code == 0
    assert f"{len(before) - 1} unchanged (skipped), 0 recorded from existing outputs, 1 to analyse" in stdout  # fmt: skip
    after = markers(local_run["out"])
    assert [k for k in before if after[k] != before[k]] == ["bad/radiograph.nii.gz"]


def test_outputs_without_database_rows_are_ingested(
    local_run: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(local_run["out"], out)
    (out / DEFAULT_DB_FILE).unlink()
    args = list(local_run["args"])
    args[args.index(local_run["out"])] = out
    code, stdout, _ = run_cli(*args)
    assert code == 0
    n = len(markers(out))
    assert f"0 unchanged (skipped), {n} recorded from existing outputs, 0 to analyse" in stdout
    original, ingested = load_records(local_run["out"]), load_records(out)
    assert {k: (r.status, r.document) for k, r in ingested.items()} == {
        k: (r.status, r.document) for k, r in original.items()
    }


def test_timeout_is_recorded_and_the_batch_goes_on(cohort: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli("batch", cohort["root"], "--out", out, "--timeout", "0.3")
    assert code == 0
    records = load_records(out)
    for key, study in cohort["by_key"].items():
        expected = "timeout" if study["expected_status"] == "ok" else "input_error"
        assert records[key].status == expected, key
        assert markers(out)[key]["status"] == expected
    assert "exceeded --timeout 0.3 s" in records[cohort["volume_key"]].error
    assert not (out / STUDIES_DIR / study_dir_name(cohort["volume_key"]) / "findings.json").exists()
    # Timeouts may be transient: the next run tries them again, not the input errors.
    code, stdout, _ = run_cli("batch", cohort["root"], "--out", out, "--timeout", "0.3")
    assert f"2 unchanged (skipped), 0 recorded from existing outputs, {N_PHANTOMS} to analyse" in (
        stdout
    )


def test_a_crashed_worker_is_recorded(cohort: dict[str, Any], tmp_path: Path) -> None:
    from cementscan.pipeline import AnalysisOptions

    study = discover_studies(cohort["root"]).studies[-1]
    options = AnalysisOptions(formats=("json", "labels"))
    task = StudyTask(study, str(tmp_path), options, options_digest(options), run_id=1)
    child = ForkedStudy(task)
    os.kill(child.pid, signal.SIGKILL)  # what the out-of-memory killer does
    outcome = child.finish()
    assert outcome.status == "crashed"
    assert "SIGKILL" in (outcome.error or "")
    assert read_marker(task.study_dir)["status"] == "crashed"


def test_bad_arguments_exit_2(cohort: dict[str, Any], tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("study,symptoms\nx,sneezing\n")
    root, out = cohort["root"], tmp_path / "out"
    cases = {
        ("batch", tmp_path / "missing", "--out", out): "no such folder",
        ("batch", root, "--out", a_file): "not a folder",
        ("batch", root, "--out", out, "--cluster", "nonsense"): "--cluster",
        ("batch", root, "--out", out, "--workers", "0"): "--workers",
        ("batch", root, "--out", out, "--symptoms-csv", bad_csv): "line 2: unknown symptom",
        ("batch", root, "--out", root): "must not be ROOT",
    }
    for args, message in cases.items():
        code, _, err = run_cli(*args)
        assert code == 2, args
        assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing written before the arguments were checked


def test_symptoms_csv_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("StudyInstanceUID,Symptoms\n1.2.3,asymptomatic\n1.2.4,\n1.2.5,cough\n")
    table = read_symptoms_csv(path)
    study = StudyInput("k", ("p",), "f", study_uid="1.2.3")
    assert table.lookup(study) == ()
    assert table.lookup(StudyInput("k", ("p",), "f", study_uid="1.2.4")) is None
    assert table.lookup(StudyInput("k", ("p",), "f", study_uid="1.2.5")) == ("cough",)
    path.write_text("name,symptoms\nx,cough\n")
    with pytest.raises(InputError, match="study column"):
        read_symptoms_csv(path)


def _tiny_dicom(folder: Path, study_uid: str, series_uid: str, patient_id: str = "P1") -> None:
    volume = CTVolume(
        hu=np.full((8, 8, 4), -1000, dtype=np.int16),
        spacing_mm=(4.0, 4.0, 4.0),
        origin_lps_mm=(0.0, 0.0, 0.0),
        direction=np.eye(3),
        source=SourceInfo(path="", format="dicom"),
    )
    write_dicom_series(
        volume, folder, patient_id=patient_id, patient_name="", study_uid=study_uid,
        series_uid=series_uid, frame_of_reference_uid=study_uid + ".9", series_number=1,
        series_description="tiny", study_date=None, file_prefix=series_uid.replace(".", "_"),
    )  # fmt: skip


def test_discovery_groups_dicom_by_study(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _tiny_dicom(root / "a" / "s1", "1.2.1", "1.2.1.1")  # study 1.2.1: two series ...
    _tiny_dicom(root / "a" / "s2", "1.2.1", "1.2.1.2")
    _tiny_dicom(root / "a" / "s3", "1.2.2", "1.2.2.1", patient_id="")  # ... beside another study
    _tiny_dicom(root / "mixed", "1.2.3", "1.2.3.1")
    _tiny_dicom(root / "mixed", "1.2.4", "1.2.4.1")  # two studies in one folder
    (root / "a" / "s1" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (root / "out").mkdir()
    (root / "out" / "labels.nii.gz").write_bytes(b"not analysed: the batch's own outputs")
    found = discover_studies(root, exclude=[root / "out"])
    studies = {s.key: s for s in found.studies}
    assert set(studies) == {"1.2.1", "a/s3"}
    assert studies["1.2.1"].paths == (str(root / "a" / "s1"), str(root / "a" / "s2"))
    assert found.dicom_series == {"1.2.1": 2, "a/s3": 1}
    assert (studies["1.2.1"].patient_id, studies["a/s3"].patient_hint) == ("P1", "a/s3")
    assert [(s.path, s.reason.split(";")[0]) for s in found.skipped] == [
        ("mixed", "files of 2 studies in one folder")
    ]
    # The unreadable file belongs to the study whose folder holds it: analyze will report it.
    before = studies["1.2.1"].fingerprint
    os.utime(root / "a" / "s1" / "broken.dcm", ns=(1, 1))
    assert discover_studies(root, exclude=[root / "out"]).studies[0].fingerprint != before


# Dask last: the cluster's threads must not be running while earlier tests fork this process.
@pytest.fixture(scope="module")
def dask_cluster() -> Any:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def subset(cohort: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Some of the cohort's studies copied (same relative paths and times: the same study keys
    and fingerprints) to a second root: the two-series study, one with symptoms, the bad ones."""
    root = tmp_path_factory.mktemp("subset") / "root"
    two_series = next(k for k, s in cohort["by_key"].items() if s["series"] == 2)
    keys = [two_series, cohort["volume_key"], "bad/radiograph.nii.gz", "bad/truncated.nii.gz"]
    for key in keys:
        source, target = cohort["root"] / key, root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)  # copy2: modification times kept
        else:
            shutil.copy2(source, target)
    return {"root": root, "keys": keys}


def _steady(record: Any, root: Path) -> dict[str, Any]:
    """A study's database record without timings, timestamps, hosts and paths."""
    extra = {k: v for k, v in record.extra.items() if k not in VOLATILE_EXTRA}
    extra.pop("input_paths")
    document = None
    if record.document is not None:
        document = {k: v for k, v in record.document.items() if k != "timings_s"}
        document["inputs"] = [{**i, "path": None} for i in document["inputs"]]
    error = None if record.error is None else record.error.replace(str(root), "ROOT")
    return {"patient": record.patient_pseudonym, "status": record.status, "error": error,
            "extra": extra, "document": document}  # fmt: skip


def test_dask_cluster_gives_the_same_database(
    cohort: dict[str, Any],
    local_run: dict[str, Any],
    subset: dict[str, Any],
    dask_cluster: Any,
    tmp_path: Path,
) -> None:
    out = tmp_path / "dask"
    out.mkdir()
    # The same pseudonym key: the two databases then name the same patients alike.
    shutil.copy(local_run["out"] / "pseudonym.key", out / "pseudonym.key")
    args = ["batch", subset["root"], "--out", out, "--cluster", dask_cluster.scheduler_address]
    code, stdout, stderr = run_cli(*args, "--symptoms-csv", cohort["csv"])
    assert code == 0, stderr
    assert "on the Dask cluster" in stdout
    local, dask = load_records(local_run["out"]), load_records(out)
    assert set(dask) == set(subset["keys"])
    assert {k: _steady(dask[k], subset["root"]) for k in dask} == {
        k: _steady(local[k], cohort["root"]) for k in dask
    }
    assert all(r.document for r in dask.values() if r.status == "ok")


def test_dask_timeout_is_recorded(
    subset: dict[str, Any], dask_cluster: Any, tmp_path: Path
) -> None:
    out = tmp_path / "dask-timeout"
    args = ["batch", subset["root"], "--out", out, "--timeout", "0.3"]
    code, _, stderr = run_cli(*args, "--cluster", dask_cluster.scheduler_address)
    assert code == 0, stderr
    statuses = {k: r.status for k, r in load_records(out).items()}
    assert statuses == {
        k: "input_error" if k.startswith("bad/") else "timeout" for k in subset["keys"]
    }
