"""CSV exports neutralise formula cells (OWASP CSV injection) and quote every cell."""

from __future__ import annotations

import csv
import io

import pytest

from shared.core.csvexport import FORMULA_TRIGGERS, neutralise, render


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("https://evil.example","x")',
        "=1+1",
        "+31 20 123 4567",
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "-",
        "@SUM(A1:A9)",
        "@",
        "\t=1+1",
        "\r=1+1",
        "==",
    ],
)
def test_a_cell_beginning_with_a_trigger_is_prefixed_with_one_quote(value: str) -> None:
    assert neutralise(value) == "'" + value


def test_every_trigger_of_owasp_is_covered() -> None:
    assert set(FORMULA_TRIGGERS) == {"=", "+", "-", "@", "\t", "\r"}
    for trigger in FORMULA_TRIGGERS:
        assert neutralise(trigger + "x") == "'" + trigger + "x"


@pytest.mark.parametrize(
    "value",
    ["", "Ann Archer", "ann@contoso.com", "a=b", "x+1", "1-2", "'=already text", " leading space"],
)
def test_other_text_is_left_as_it_is(value: str) -> None:
    assert neutralise(value) == value


def test_numbers_stay_numbers_and_none_is_empty() -> None:
    assert neutralise(-5) == "-5"
    assert neutralise(-1.5) == "-1.5"
    assert neutralise(0) == "0"
    assert neutralise(float("-inf")) == "'-inf"  # no number to a spreadsheet: text
    assert neutralise(True) == "true" and neutralise(False) == "false"
    assert neutralise(None) == ""


def _read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_render_neutralises_and_quotes_every_cell() -> None:
    rows = [
        ["=1+1", "Archer, Ann", 'say "hi"'],
        ["@x", "two\r\nlines", "a;=1+1"],
        [None, -3, "plain"],
    ]
    data = render(["email", "name", "note"], rows)
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads UTF-8
    text = data.decode("utf-8-sig")
    assert text.split("\r\n")[0] == '"email","name","note"'
    assert '"\'=1+1","Archer, Ann","say ""hi"""\r\n' in text
    # A `;` (another locale's separator) stays inside its quoted cell: no new cell starts at `=`.
    assert '"a;=1+1"' in text
    assert text.endswith('"","-3","plain"\r\n')
    assert _read(data) == [
        ["email", "name", "note"],
        ["'=1+1", "Archer, Ann", 'say "hi"'],
        ["'@x", "two\r\nlines", "a;=1+1"],
        ["", "-3", "plain"],
    ]


def test_render_without_bom_and_with_no_rows() -> None:
    assert render(["email"], [], bom=False) == b'"email"\r\n'


def test_render_neutralises_the_header_too() -> None:
    assert _read(render(["=evil"], [["x"]])) == [["'=evil"], ["x"]]


def test_a_row_of_the_wrong_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="row 2 has 1 cells; the header has 2"):
        render(["a", "b"], [["1", "2"], ["3"]])
