"""CSV lists of people as Excel saves them: a UTF-8 byte-order mark, semicolons in many locales.

Found in review: a ``text/csv`` body kept its byte-order mark (only the upload used utf-8-sig), so a
header ``email`` was refused and a plain list missed its first person; a semicolon CSV was refused.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from backend.jobs.activation import run_activation
from tests.mass_env import MassEnv

PEOPLE = [("bob@acme.example", "activated"), ("jill@acme.example", "activated")]


def _text(bom: bool, delimiter: str, header: bool) -> str:
    lines = [f"email{delimiter}name"] if header else []
    lines += [f"bob@acme.example{delimiter}Bob", f"jill@acme.example{delimiter}Jill"] if header else \
        ["bob@acme.example", "jill@acme.example"]
    return ("\ufeff" if bom else "") + "\r\n".join(lines) + "\r\n"


def _post(mass: MassEnv, how: str, text: str) -> Any:
    if how == "body":
        return mass.client.post("/api/admin/activate?provider=microsoft", data=text.encode("utf-8"),
                                headers={"X-CSRF-Token": mass.csrf, "Content-Type": "text/csv"})
    return mass.post("/api/admin/activate", data={"file": (io.BytesIO(text.encode("utf-8")), "people.csv"),
                                                  "provider": "microsoft"}, content_type="multipart/form-data")


@pytest.mark.parametrize("how", ["body", "upload"])
@pytest.mark.parametrize(("bom", "delimiter", "header"), [
    (True, ",", True), (True, ",", False), (False, ";", True), (True, ";", True), (False, ",", True),
])
def test_excel_csv_is_read_alike_as_a_body_and_an_upload(mass: MassEnv, how: str, bom: bool, delimiter: str,
                                                        header: bool) -> None:
    started = _post(mass, how, _text(bom, delimiter, header))
    assert started.status_code == 202, started.get_data(as_text=True)
    run_activation(started.json["job_id"])
    results = mass.client.get(f"/api/admin/activations/{started.json['job_id']}").json["results"]
    assert [(r["address"], r["result"]) for r in results] == PEOPLE, results


def test_a_semicolon_in_a_comma_csv_does_not_change_the_delimiter(mass: MassEnv) -> None:
    started = _post(mass, "body", "email,name,note\r\nbob@acme.example,Bob,a;b\r\n")
    assert started.status_code == 202, started.get_data(as_text=True)
    run_activation(started.json["job_id"])
    results = mass.client.get(f"/api/admin/activations/{started.json['job_id']}").json["results"]
    assert [r["address"] for r in results] == ["bob@acme.example"]
