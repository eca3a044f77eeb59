"""Every CSV this service exports is written here, safe to open in a spreadsheet.

Values are stored as they were given: an imported name `=HYPERLINK(...)` or `+31 20 123` is just
text to us. A spreadsheet, though, reads a cell that begins with `=`, `+`, `-`, `@`, tab or carriage
return as a formula (CSV or formula injection, OWASP), and an admin opening an export would run
whatever a user typed. So on the way out (OWASP's remedy):

- `neutralise` prefixes such a cell with a single quote, which Excel, LibreOffice and Google Sheets
  take as "this is text" (and do not show). Numbers we produce ourselves are not text: they pass
  as they are, so `-5` stays a number.
- `render` quotes every cell (RFC 4180: `"` doubled, `CRLF` between records), so a `,` or `;` or
  a line break inside a value never starts a new cell whose first character is a trigger, whatever
  separator the spreadsheet's locale expects.

After a round trip through a spreadsheet's "save as CSV", a neutralised cell may come back with its
quote as data; that is the accepted cost (the lesser evil versus running the formula).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence

# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | bool | None


def neutralise(value: Cell) -> str:
    """One cell as text a spreadsheet shows as text: a leading trigger gets a `'` before it.

    None is an empty cell; booleans are `true`/`false`; ints and finite floats are numbers we
    formatted (digits, sign, point, exponent), never a formula, and pass unchanged.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, float):
        value = str(value)  # "-inf" is no number to a spreadsheet: text, checked like text
    if value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def render(header: Sequence[str], rows: Iterable[Sequence[Cell]], *, bom: bool = True) -> bytes:
    """A whole CSV file: the header, then one record per row, every cell neutralised and quoted.

    UTF-8, with a byte-order mark by default so Excel does not read it as the local code page
    (our own import, `shared.directory.userimport.parse_users_csv`, skips it). A row whose length
    differs from the header's is a programming error (ValueError), never a misaligned file.
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([neutralise(name) for name in header])
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells; the header has {len(header)}")
        writer.writerow([neutralise(cell) for cell in row])
    return out.getvalue().encode("utf-8-sig" if bom else "utf-8")


__all__ = ["FORMULA_TRIGGERS", "Cell", "neutralise", "render"]
