"""`hm3 serve`: KServe predictor / Feast transformer."""

from __future__ import annotations

import typer

app = typer.Typer(rich_markup_mode="markdown")


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve a model artifact on KServe (V1 and V2 protocols); `hm3 serve --help` lists all flags.

    hm3 serve --model DIR [--feast-repo DIR] [--http-port 8080] [any KServe model server flag].
    Inputs: the model artifact folder (local, file:// or gs://) and optionally a Feast repo
    (applied and materialized) to fetch features requests do not carry. Serves
    /v1/models/hm3:predict and /v2/models/hm3/infer until SIGTERM/SIGINT. Defaults: port
    8080, model name hm3, feature service hm3_v1, max batch 512, max body 4 MiB.
    """
    import sys

    from components.serving import server

    # kserve.model_server parses sys.argv when imported; give it the serve arguments only.
    sys.argv = ["hm3 serve", *ctx.args]
    server.main(ctx.args)
