"""The case filter options `cases list` and `export` share, declared once.

`with_case_filter` adds them to a command's own options and hands the command what was
given as one mapping (`chosen`), keyed by CaseFilter's field names: the command builds its
CaseFilter from it, adding only what is its own (a page, or every case).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

import typer

from mailbridge.console.filters import SORTS, STATUSES, normalise_status
from mailbridge.errors import UserError


def _status(value: str | None) -> str | None:
    try:
        return normalise_status(value)
    except UserError:
        raise typer.BadParameter(f"use one of {', '.join(STATUSES)}") from None


TypeOption = Annotated[
    str | None, typer.Option("--type", help="Enquiry type, e.g. 'Pothole' (any case).")
]
RefOption = Annotated[
    str | None, typer.Option("--ref", help="Part of a reference, e.g. 2026-0004 or MQ-2026-00042.")
]
ServiceAreaOption = Annotated[
    str | None, typer.Option("--service-area", help="Service area, e.g. Highways.")
]
SurnameOption = Annotated[
    str | None, typer.Option("--surname", help="The member's surname, e.g. Patel.")
]
DirectorateOption = Annotated[
    str | None, typer.Option("--directorate", help="Directorate, e.g. 'Adults and Health'.")
]
EmailOption = Annotated[
    str | None,
    typer.Option("--email", help="Any address of the member or of whoever sent the enquiry."),
]
DistrictOption = Annotated[
    str | None, typer.Option("--district", help="District, e.g. Harborough.")
]
StatusOption = Annotated[
    str | None,
    typer.Option(
        "--status",
        callback=_status,
        help=f"Only cases with this status: {', '.join(STATUSES)}.",
    ),
]
OfficerOption = Annotated[
    str | None,
    typer.Option("--officer", help="An officer's email: cases they lead or help on."),
]
MemberOption = Annotated[
    str | None,
    typer.Option("--member", help="A member's email or part of their name: cases they are on."),
]
OverdueOption = Annotated[
    bool, typer.Option("--overdue", help="Only open cases past their deadline.")
]
DueWithinOption = Annotated[
    int | None,
    typer.Option(
        "--due-within",
        min=0,
        metavar="N",
        help="Only open cases due from today to N working days ahead.",
    ),
]
CreatedFromOption = Annotated[
    str | None,
    typer.Option("--created-from", metavar="YYYY-MM-DD", help="Created on or after this day."),
]
CreatedToOption = Annotated[
    str | None,
    typer.Option("--created-to", metavar="YYYY-MM-DD", help="Created on or before this day."),
]
SearchOption = Annotated[
    str | None,
    typer.Option("--search", metavar="TEXT", help="Text in the subject or the enquiry (any case)."),
]
SortOption = Annotated[str, typer.Option("--sort", help=f"Order by one of: {', '.join(SORTS)}.")]
DescOption = Annotated[
    bool | None,
    typer.Option(
        "--desc/--asc",
        help="Descending or ascending (by default newest first for created, else ascending).",
        show_default=False,
    ),
]

# Option name = CaseFilter field -> (its annotation, its default), in the order --help lists.
OPTIONS: dict[str, tuple[Any, Any]] = {
    "type": (TypeOption, None),
    "ref": (RefOption, None),
    "service_area": (ServiceAreaOption, None),
    "surname": (SurnameOption, None),
    "directorate": (DirectorateOption, None),
    "email": (EmailOption, None),
    "district": (DistrictOption, None),
    "status": (StatusOption, None),
    "officer": (OfficerOption, None),
    "member": (MemberOption, None),
    "overdue": (OverdueOption, False),
    "due_within": (DueWithinOption, None),
    "created_from": (CreatedFromOption, None),
    "created_to": (CreatedToOption, None),
    "search": (SearchOption, None),
    "sort": (SortOption, "created"),
    "desc": (DescOption, None),
}


def with_case_filter(command: Callable[..., None]) -> Callable[..., None]:
    """The command's own options with the filter options after --config; the command is
    called with what the filter options hold as `chosen` (Typer reads `__signature__`)."""
    own = inspect.signature(command, eval_str=True)  # Typer reads the Annotated options
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=default)
        for name, (hint, default) in OPTIONS.items()
    ]

    @wraps(command)
    def run(**given: Any) -> None:
        chosen = {name: given.pop(name) for name in OPTIONS}
        command(**given, chosen=chosen)

    # The filters follow --config, where each command has always listed them.
    parameters: list[inspect.Parameter] = []
    for parameter in own.parameters.values():
        if parameter.name != "chosen":
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        if parameter.name == "config":
            parameters.extend(shared)
    run.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    return run
