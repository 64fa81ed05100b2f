"""``single_query_values`` refuses a repeated query parameter unless the route declares
it a list: LUC has no such route today; a route that adds one keeps its repeats."""

from __future__ import annotations

from typing import Annotated

from litestar import Litestar, get
from litestar.params import FromQuery, QueryParameter
from litestar.testing import TestClient

from service.api.errors import luc_error_handler
from service.api.params import single_query_values
from service.errors import LucError


@get("/tags", sync_to_thread=False)
def tags(
    tag: FromQuery[list[str]],
    extra: Annotated[list[str] | None, QueryParameter(name="x")] = None,
    one: FromQuery[str | None] = None,
) -> dict[str, object]:
    return {"tag": tag, "x": extra, "one": one}


def test_a_list_parameter_takes_repeats_and_a_single_one_does_not() -> None:
    app = Litestar(
        [tags],
        before_request=single_query_values,
        exception_handlers={LucError: luc_error_handler},
    )
    with TestClient(app) as client:
        listed = client.get("/tags?tag=a&tag=b&x=1&x=2&one=z")
        assert listed.json() == {"tag": ["a", "b"], "x": ["1", "2"], "one": "z"}
        twice = client.get("/tags?tag=a&one=y&one=z")
        assert twice.status_code == 400
        assert twice.json()["detail"] == "one: given more than once; it takes one value"


def test_a_parameter_the_route_does_not_take_is_refused_naming_what_it_takes() -> None:
    app = Litestar(
        [tags],
        before_request=single_query_values,
        exception_handlers={LucError: luc_error_handler},
    )
    with TestClient(app) as client:
        typo = client.get("/tags?tag=a&tga=b")
        assert typo.status_code == 400
        assert typo.json()["detail"] == (
            "tga: not a query parameter of this route (it takes: one, tag, x)"
        )
        # The argument's own name is not the query's when the parameter is named.
        assert client.get("/tags?tag=a&extra=1").status_code == 400
