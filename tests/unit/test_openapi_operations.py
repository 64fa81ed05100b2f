"""Every operation of the OpenAPI document has an operation id and a summary (STYLE rule 1),
so the document reads well and clients generated from it name their methods."""

from __future__ import annotations

from service.app import create_app
from service.settings import load_settings


def test_every_operation_has_an_operation_id_and_a_summary() -> None:
    # create_app connects to nothing: the database is reached only in the lifespan.
    settings = load_settings({"LUC_DATABASE_URL": "postgresql://luc@localhost/luc"})
    document = create_app(settings).openapi_schema.to_schema()
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert len(operations) > 30
    unnamed = [name for name, op in operations.items() if not op.get("operationId")]
    unsummarised = [name for name, op in operations.items() if not op.get("summary")]
    assert (unnamed, unsummarised) == ([], [])
