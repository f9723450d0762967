"""`mailbridge members|officers|delegates import|list`: the people directory."""

from __future__ import annotations

import csv
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import Session

from mailbridge.cases import directory
from mailbridge.cases.directory import ImportReport
from mailbridge.cli.context import ConfigOption, console, friendly, opened, stdout
from mailbridge.spreadsheet import neutralise
from mailbridge.store.models import Person

SINGULAR = {"members": "member", "officers": "officer", "delegates": "delegate"}
EXAMPLES = {
    "members": (
        "name,email,extra_emails,division,district,party\n"
        "Cllr Jane Smith,cllr.jane.smith@example.gov.uk,jane.smith@home.example.org,"
        "Bowden,Harborough,Independent"
    ),
    "officers": (
        "name,email,extra_emails,service_area,directorate,coordinator\n"
        "Priya Shah,priya.shah@example.gov.uk,,Highways,Environment and Transport,"
    ),
    "delegates": "name,email,member_email\nTom Baker,tom.baker@example.gov.uk,"
    "cllr.jane.smith@example.gov.uk",
}
WHO = {
    "members": "County councillors who send enquiries.",
    "officers": "Officers who answer enquiries, by service area and directorate.",
    "delegates": "Assistants who may send enquiries on a member's behalf.",
}


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(group: str, report: ImportReport) -> str:
    """The one line an import ends with, e.g. '12 members imported: 10 created, ...'."""
    return (
        f"{_plural(report.accepted, SINGULAR[group])} imported: {report.created} created, "
        f"{report.updated} updated, {report.unchanged} unchanged; "
        f"{_plural(len(report.rejected), 'row')} rejected"
    )


def _make(group: str) -> typer.Typer:
    app = typer.Typer(help=f"{WHO[group]}", no_args_is_help=True)
    example = EXAMPLES[group].replace("\n", "\n\n")

    @app.command(
        "import",
        help=(
            f"Add or update {group} from a CSV file (UTF-8, header line first).\n\n"
            f"Each person is matched by their email; re-importing the same file changes "
            f"nothing, and extra_emails replaces the addresses held before. A row that cannot "
            f"be used is listed with its reason and the other rows are still imported.\n\n"
            f"Example file:\n\n{example}\n\n"
            f"Example: mailbridge {group} import {group}.csv --config /etc/mailbridge/config.toml"
        ),
    )
    @friendly
    def import_(
        path: Annotated[Path, typer.Argument(metavar="CSV_PATH", help="The CSV file.")],
        config: ConfigOption = "config.toml",  # type: ignore[assignment]
    ) -> None:
        rows = directory.read_csv(path, group)  # a file we cannot read stops here: exit 1
        with opened(config) as (_cfg, engine):
            report = directory.import_rows(engine, group, rows)  # type: ignore[arg-type]
        console.print(summary(group, report), highlight=False)
        if report.rejected:
            table = Table(title="Rejected rows")
            table.add_column("Row", justify="right")
            table.add_column("Reason", overflow="fold")
            for number, reason in report.rejected:
                table.add_row(str(number), reason)
            console.print(table)

    @app.command(
        "list",
        help=(
            f"List the {group}, with their extra addresses.\n\n"
            f"--format csv writes the import format, so the output can be edited and "
            f"imported again; text a spreadsheet would run as a formula (=, +, -, @ first) "
            f"is written after an apostrophe, which the import takes off again.\n\n"
            f"Example: mailbridge {group} list --format csv > {group}.csv"
        ),
    )
    @friendly
    def list_(
        config: ConfigOption = "config.toml",  # type: ignore[assignment]
        fmt: Annotated[Format, typer.Option("--format", help="table or csv.")] = Format.TABLE,
    ) -> None:
        columns = directory.COLUMNS[group]
        with opened(config) as (_cfg, engine), Session(engine) as session:  # type: ignore[arg-type]
            rows = [
                [_value(session, person, extra, c) for c in columns]
                for person, extra in directory.list_people(session, SINGULAR[group])
            ]
        if fmt == Format.CSV:
            writer = csv.writer(stdout(), lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([neutralise(v) for v in r] for r in rows)
            return
        table = Table(title=_plural(len(rows), SINGULAR[group]))
        for c in columns:
            table.add_column(c.replace("_", " ").capitalize(), overflow="fold")
        for r in rows:
            table.add_row(*(v.replace("; ", "\n") for v in r))
        console.print(table)

    return app


def _value(session: Session, person: Person, extra: list[str], column: str) -> str:
    if column == "extra_emails":
        return "; ".join(extra)
    if column == "member_email":
        member = session.get(Person, person.delegate_for_id) if person.delegate_for_id else None
        return member.email if member else ""
    if column == "coordinator":
        return "yes" if person.coordinator else ""
    value = getattr(person, column)
    return "" if value is None else str(value)


members_app = _make("members")
officers_app = _make("officers")
delegates_app = _make("delegates")
