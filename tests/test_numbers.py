"""Numbers as providers print them (batchops.numbers): the `number:` setting of a numeric column, read the same
way in Python (scanned statements) and in DuckDB SQL (CSV drops), and never a guess without it."""

from __future__ import annotations

import csv
import re
from decimal import Decimal

import duckdb
import pytest
import yaml
from pydantic import ValidationError

from batchops.config.provider import ColumnSpec
from batchops.numbers import NumberStyle, number_sql, parse_number
from batchops.stages.ingest import ingest
from batchops.stages.validate import validate

from conftest import REPO, make_drop, run_context

US = NumberStyle(",", ".", ("$", "USD"), ("minus", "parentheses", "trailing_minus", "cr_dr"), True)
EU = NumberStyle(".", ",", ("€",), ("minus", "trailing_minus"), True)
SWISS = NumberStyle("'", ".", ("CHF",), ("minus",), True)
FRENCH = NumberStyle(" ", ",", (), ("minus",), True)
STYLES = {"default": NumberStyle(), "us": US, "eu": EU, "swiss": SWISS, "french": FRENCH}


@pytest.mark.parametrize(("text", "style", "value"), [
    ("1,234.56", US, "1234.56"),
    ("$1,234.56", US, "1234.56"),
    ("USD 5", US, "5"),
    ("(1,234.56)", US, "-1234.56"),
    ("($3.00)", US, "-3.00"),
    ("-$12.50", US, "-12.50"),
    ("731.53-", US, "-731.53"),
    ("- 833.24", US, "-833.24"),
    ("12.50 DR", US, "-12.50"),
    ("12.50 CR", US, "12.50"),
    ("48,528", US, "48528"),
    ("1.234,56", EU, "1234.56"),
    ("1.234.567,89", EU, "1234567.89"),
    ("5,00 €", EU, "5.00"),
    ("0,00-", EU, "0.00"),
    ("1'234.50", SWISS, "1234.50"),
    ("CHF 12", SWISS, "12"),
    ("1 234,56", FRENCH, "1234.56"),
    ("1\u202f234,56", FRENCH, "1234.56"),
    ("-833.24", NumberStyle(), "-833.24"),
])
def test_declared_formats_read_to_the_canonical_number(text, style, value):
    assert parse_number(text, style) == parse_number(text, style).__class__(value)


@pytest.mark.parametrize(("text", "style", "why"), [
    ("48,528", NumberStyle(), r"reads two ways: 48528 with thousands ',' or 48\.528 with decimal ','"),
    ("1,234.56", NumberStyle(), r"declare number: \{thousands: ','\}"),
    ("1.234,56", NumberStyle(), r"declare number: \{thousands: '\.', decimal: ','\}"),
    ("731,53", NumberStyle(), r"decimal comma"),
    ("731.53-", NumberStyle(), r"minus after it.*negative: \[minus, trailing_minus\]"),
    ("(12.00)", EU, r"parentheses.*negative: \[minus, parentheses\]"),
    ("12.50 DR", EU, r"marked DR"),
    ("1,23,456.00", US, r"not a number in the column's format"),
    ("$5", EU, r"currency mark '\$'.*declare it under currency"),
    ("12.5.3", NumberStyle(), r"not a number"),
    ("1.234.567", NumberStyle(), r"thousands '\.'"),
    ("1 234.50", NumberStyle(), r"blanks between digits"),
])
def test_a_value_the_format_does_not_explain_is_refused_with_the_setting_that_decides_it(text, style, why):
    parsed = parse_number(text, style)
    assert parsed.value is None
    assert re.search(why, parsed.problem), parsed.problem


def test_whole_numbers_refuse_a_decimal_part():
    assert parse_number("1,200", US, integer=True).value == "1200"
    assert "whole numbers" in parse_number("12.5", US, integer=True).problem


PARITY_VALUES = ["48,528", "731.53", "731.53-", "- 833.24", "(1,234.56)", "$1,234.56", "12.50 DR", "12.50 cr",
                 "1,23,456.00", "1.234,56", "731,53", "USD 5", "", "  ", "-$12.50", "($3.00)", "1 234,56",
                 "1'234.50", "CHF 12", "12.5.3", "abc", "0.00-", "1.234.567,89", "€ 5,00", "5,00 €", "1,234", "1234",
                 "-0", "(0.00)", "99999999999.99"]


@pytest.mark.parametrize("name", sorted(STYLES))
def test_sql_and_python_read_every_value_alike(name):
    """number_sql (CSV ingest) and parse_number (OCR) must agree value by value, invalid by invalid."""
    style = STYLES[name]
    value, invalid = number_sql("raw", style, "DOUBLE")
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT raw, {value}, {invalid} FROM (SELECT unnest($v) AS raw)",
                           {"v": PARITY_VALUES}).fetchall()
    for raw, sql_value, sql_invalid in rows:
        parsed = parse_number(raw, style)
        blank = not raw.strip()
        expected = None if blank or parsed.value is None else float(parsed.value)
        assert (sql_value, sql_invalid) == (expected, not blank and parsed.value is None), (name, raw, parsed)


@pytest.mark.parametrize(("number", "message"), [
    ({"thousands": ".", "decimal": "."}, "thousands and decimal are both '.'"),
    ({"currency": ["1"]}, "would take digits"),
    ({"negative": ["brackets"]}, "negative"),
    ({"thousands": "_"}, "thousands"),
    ({"negative": []}, "negative"),
])
def test_a_bad_number_setting_names_the_field(number, message, bad_input):
    with pytest.raises(ValidationError, match=message) as error:
        ColumnSpec(source="Amount", type="float", number=number)
    bad_input.record("config", f"number: {number}", str(error.value).splitlines()[0:3], kept="nothing loaded")


def test_number_on_a_text_column_is_refused():
    with pytest.raises(ValidationError, match="number applies to integer or float columns, not string"):
        ColumnSpec(source="Ref", type="string", number={"thousands": ","})


# ---------------------------------------------------------------- a European CSV provider, end to end


def european(amount: str) -> str:
    """'12345.6' as a German export writes it: '12.345,60'."""
    whole, _, cents = f"{Decimal(amount):.2f}".partition(".")
    return f"{int(whole):,}".replace(",", ".") + "," + cents


def rewrite_amounts(path, column: str, scale: int, bad: dict[int, str] | None = None) -> list[float]:
    """Rewrite `column` of a ';' CSV in the European style (scaled so thousands appear); returns the amounts."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    index = rows[0].index(column)
    expected = []
    for number, row in enumerate(rows[1:]):
        amount = Decimal(row[index]) * scale
        expected.append(float(amount))
        row[index] = (bad or {}).get(number, european(str(amount)))
    with path.open("w", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)
    return expected


def declare_european_amounts(settings, declared: bool = True) -> None:
    path = settings.config_dir / "provider_b.yaml"
    config = yaml.safe_load(path.read_text())
    amount = config["entities"]["transactions"]["columns"]["amount"]
    amount["max"] = 10_000_000
    if declared:
        amount["number"] = {"thousands": ".", "decimal": ","}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def staged_amounts(ctx) -> list[float]:
    with duckdb.connect() as con:
        return [r[0] for r in con.execute("SELECT amount FROM read_parquet(?)",
                                          [str(ctx.staging_dir / "transactions.parquet")]).fetchall()]


def test_a_csv_with_european_amounts_is_read_by_its_declared_format(project):
    files = make_drop(project, "provider_b", customers=200)
    expected = rewrite_amounts(files["transactions"], "net_value", scale=37)
    assert any("." in european(str(v)) for v in expected)  # thousands separators are in the file
    declare_european_amounts(project)
    ctx = run_context(project, "provider_b")
    ingest(ctx)
    report = validate(ctx)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert staged_amounts(ctx) == pytest.approx(expected)
    check = next(c for c in report["checks"] if c["check"] == "number_format")
    assert check["passed"] and check["observed"] == 0


def test_a_value_the_declared_format_does_not_read_fails_dq_with_an_example(project, bad_input):
    files = make_drop(project, "provider_b", customers=200)
    rewrite_amounts(files["transactions"], "net_value", scale=37, bad={3: "1,234.56", 4: "(12,00)"})
    declare_european_amounts(project)
    ctx = run_context(project, "provider_b")
    ingest(ctx)
    report = validate(ctx)
    check = next(c for c in report["checks"] if c["check"] == "number_format")
    assert not check["passed"] and "'1,234.56'" in check["detail"] and "(12,00)" in check["detail"]
    bad_input.record("data", "amounts '1,234.56' and '(12,00)' in a column declared {thousands: '.', decimal: ','}",
                     check["detail"], kept="the drop is not loaded (DQ failed)")


def test_an_undeclared_european_csv_is_refused_not_guessed(project, bad_input):
    files = make_drop(project, "provider_b", customers=200)
    rewrite_amounts(files["transactions"], "net_value", scale=37)
    declare_european_amounts(project, declared=False)
    ctx = run_context(project, "provider_b")
    ingest(ctx)
    report = validate(ctx)
    assert not report["passed"]
    failed = [c for c in report["checks"] if not c["passed"]]
    detail = " ".join(c.get("detail") or "" for c in failed)
    assert "number:" in detail, failed  # the setting that would read the file
    row_count = next(c for c in failed if c["check"] == "row_count")  # every row rejected: no row left
    assert "could not be parsed" in row_count["detail"] and "cut short" not in detail, row_count
    bad_input.record("data", "amounts written '12.345,60' in a float column without a number setting",
                     detail, kept="the drop is not loaded (DQ failed)")


def test_the_documented_number_examples_are_valid_columns():
    """docs/configs.md's `number` examples load as they are written."""
    text = (REPO / "docs" / "configs.md").read_text()
    section = text[text.index("Numbers as the provider writes them"):]
    block = section[section.index("```yaml\n") + 8:section.index("```", section.index("```yaml\n") + 8)]
    columns = yaml.safe_load(block)["columns"]
    assert len(columns) >= 6
    for name, spec in columns.items():
        assert ColumnSpec(**spec).number is not None, name
