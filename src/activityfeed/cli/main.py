"""The ``activityfeed`` command: the entry point that wires the command groups."""

from __future__ import annotations

import typer

from activityfeed.cli import accounts, bench, db, demo, export, serve, simulate, trash, verify

app = typer.Typer(
    help="Activity Feed: see and triage everything that happens in your workspaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(accounts.user_app, name="user")
app.add_typer(accounts.workspace_app, name="workspace")
app.add_typer(accounts.apikey_app, name="apikey")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
app.command("purge-trash")(trash.purge_trash)
app.command("export")(export.export)
app.command("bench")(bench.bench)
app.command("verify")(verify.verify)


def main() -> None:
    app()
