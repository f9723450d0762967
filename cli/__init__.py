"""The `mailbridge` command line: thin Typer commands over functions in mailbridge/."""
