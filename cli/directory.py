"""`mailbridge members|officers|delegates import|list`: the people directory."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer
from mailbridge.cli.context import ConfigOption, console, friendly, opened
from rich.table import Table
from sqlmodel import Session

from mailbridge import directory
from mailbridge.db import transaction

KIND_OF = {"members": "member", "officers": "officer", "delegates": "delegate"}
EXAMPLES = {
    "members": "name,email,extra_emails,division,district,party\n"
    "Cllr Jane Smith,cllr.jane.smith@example.gov.uk,jane@home.example.org,Bowden,"
    "Harborough,Independent",
    "officers": "name,email,extra_emails,service_area,directorate\n"
    "Priya Shah,priya.shah@example.gov.uk,,Highways,Environment and Transport",
    "delegates": "name,email,member_email\n"
    "Tom Baker,tom.baker@example.gov.uk,cllr.jane.smith@example.gov.uk",
}


def _make(group: str) -> typer.Typer:
    app = typer.Typer(help=f"The {group} in the directory.", no_args_is_help=True)

    @app.command(
        "import",
        help=(
            f"Add or update {group} from a CSV file (UTF-8, header line first).\n\n"
            f"Re-importing the same file changes nothing; a row that cannot be used is reported "
            f"with its reason and the others are still imported.\n\nExample file:\n\n"
            + EXAMPLES[group].replace("\n", "\n\n")
            + f"\n\nExample: mailbridge {group} import {group}.csv"
        ),
    )
    @friendly
    def import_(
        path: Annotated[Path, typer.Argument(help="The CSV file.")],
        config: ConfigOption = "config.toml",  # type: ignore[assignment]
    ) -> None:
        rows = directory.read_csv(path, group)
        with opened(config) as (_cfg, engine), transaction(engine) as session:  # type: ignore[arg-type]
            report = directory.IMPORTERS[group](session, rows)
        console.print(
            f"{report.accepted} {group} imported: {report.created} created, "
            f"{report.updated} updated, {report.unchanged} unchanged; "
            f"{len(report.rejected)} rows rejected",
            highlight=False,
        )
        if report.rejected:
            table = Table(title="Rejected rows")
            table.add_column("Row", justify="right")
            table.add_column("Reason")
            for number, reason in report.rejected:
                table.add_row(str(number), reason)
            console.print(table)

    @app.command("list", help=f"List the {group}.\n\nExample: mailbridge {group} list --format csv")
    @friendly
    def list_(
        config: ConfigOption = "config.toml",  # type: ignore[assignment]
        fmt: Annotated[str, typer.Option("--format", help="table or csv")] = "table",
    ) -> None:
        if fmt not in ("table", "csv"):
            raise typer.BadParameter("use table or csv", param_hint="--format")
        with opened(config) as (_cfg, engine), Session(engine) as session:  # type: ignore[arg-type]
            people = directory.list_people(session, KIND_OF[group])
            delegate_of = {}
            if group == "delegates":
                from mailbridge.models import Person

                for p, _ in people:
                    m = session.get(Person, p.delegate_for_id) if p.delegate_for_id else None
                    delegate_of[p.id] = m.email if m else ""
        columns = directory.COLUMNS[group]
        rows = []
        for p, extra in people:
            values = {
                "name": p.name,
                "email": p.email,
                "extra_emails": "; ".join(extra),
                "division": p.division,
                "district": p.district,
                "party": p.party,
                "service_area": p.service_area,
                "directorate": p.directorate,
                "member_email": delegate_of.get(p.id, ""),
            }
            rows.append([values[c] or "" for c in columns])
        if fmt == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            writer.writerows(rows)
            return
        table = Table(title=f"{len(rows)} {group}")
        for c in columns:
            table.add_column(c.replace("_", " ").capitalize())
        for r in rows:
            table.add_row(*r)
        console.print(table)

    return app


members_app = _make("members")
officers_app = _make("officers")
delegates_app = _make("delegates")
