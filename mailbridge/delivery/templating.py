"""Email text from Jinja2 templates: shipped ones, overridable from a configured folder."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


def shipped_templates() -> Path:
    return Path(str(files("mailbridge.templates")))


class Templates:
    """Renders `<name>.subject.j2`, `<name>.txt.j2` and `<name>.html.j2` together."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(FileSystemLoader(str(shipped_templates())))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["longdate"] = lambda d: f"{d:%A} {d.day} {d:%B %Y}"

    def render(self, name: str, **context: Any) -> RenderedEmail:
        """Subject and text always; HTML when the template has an HTML part (staff notices
        are plain text)."""
        subject = self.env.get_template(f"{name}.subject.j2").render(**context)
        try:
            html_template = self.env.get_template(f"{name}.html.j2")
        except TemplateNotFound:
            html = None
        else:
            html = html_template.render(**context)
        return RenderedEmail(
            subject=" ".join(subject.split()),
            text=self.env.get_template(f"{name}.txt.j2").render(**context),
            html=html,
        )
