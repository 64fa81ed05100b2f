"""The ``luc`` command: one module per command group.

::

    luc serve, luc migrate    serve.py     run the HTTP API; create or upgrade the database
    luc demo                  demo.py      realistic traffic sent to the running LUC
    luc keys ...              keys.py      API keys: create, list, revoke
    luc catalog ...           catalog.py   model prices: import, sync, rerate
    luc customers ...         customers.py customers: create, list, show, update; credits
    luc plans ...             plans.py     rate plans: create, list, show, add-version, reprice
    luc invoice ...           invoice.py   per-job invoices: preview, issue, show, verify
    luc export focus          export.py    cost and usage as FinOps FOCUS CSV
    luc partitions ensure     partitions.py  the ledger's coming months (cron, as the owner)
    luc grafana role          grafana.py   the read-only role of Grafana's PostgreSQL datasource
                              database.py  the database a command uses, as the server does

Two rules hold for every command. A ``LucError`` is mapped here, once (``LucGroup``): its
message on one line, exit status 1, no traceback. And the database is the server's, found
the way ``luc serve`` finds it (``database.py``): only ``serve`` and ``migrate`` create or
migrate one; every other command names the one it uses and refuses one that is missing or
not at the newest schema.
"""

from __future__ import annotations

from typing import Any

import click

from service.cli.catalog import catalog
from service.cli.customers import customers
from service.cli.demo import demo
from service.cli.export import export
from service.cli.grafana import grafana
from service.cli.invoice import invoice
from service.cli.keys import keys
from service.cli.partitions import partitions
from service.cli.plans import plans
from service.cli.serve import migrate, serve
from service.errors import LucError


class LucGroup(click.Group):
    """The root group: a ``LucError`` from any command ends it as one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LucError as exc:
            # One line, even when a lower-level message (a driver's, say) spans several.
            message = "; ".join(line.strip() for line in exc.message.splitlines() if line.strip())
            # ClickException: "Error: <message>" on stderr, exit status 1 (usage errors: 2).
            raise click.ClickException(message) from exc
        except RecursionError as exc:
            # A JSON document nested deeper than Python's parsers go (a file given to
            # `catalog import`, `invoice verify` or `--models`, or what `catalog sync`
            # fetched): a traceback said it. The API refuses such nesting the same way.
            raise click.ClickException(
                "the input is nested too deeply to read (JSON arrays or objects inside one "
                "another thousands of levels deep): no document LUC reads is"
            ) from exc


@click.group(cls=LucGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """LUC, the LLM usage cost ledger.

    LUC meters every LLM call the AIMS gateway makes, prices it against a versioned model
    catalog and keeps the money in an append-only ledger, rolled up per job and agent.

    Configuration comes from LUC_* environment variables, the same for every command:
    with LUC_DATABASE_URL unset, LUC runs its own embedded PostgreSQL in LUC_DATA_DIR.
    Only `luc serve` and `luc migrate` create or migrate a database; the other commands
    but `demo` (keys, catalog, customers, plans, invoice, export, partitions, grafana)
    work on the server's database, say which one on stderr, and refuse one that does not
    exist. `luc demo` finds the server at LUC_HOST:LUC_PORT,
    as `luc serve` binds.
    """


for command in (
    serve,
    migrate,
    demo,
    keys,
    catalog,
    customers,
    plans,
    invoice,
    export,
    partitions,
    grafana,
):
    main.add_command(command)
