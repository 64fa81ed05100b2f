"""Who an issued document was addressed to, read back from its canonical form: a credit
note goes to that party when a job's usage billed before it had a customer is reversed."""

from __future__ import annotations

from service.invoices.models import BillTo
from service.invoices.render import bill_to_of_document


def test_a_registered_customer_a_free_text_one_and_none_are_read_back() -> None:
    document = {"id": "acme", "name": "Acme", "address": "1 Road", "tax_id": "X1"}
    assert bill_to_of_document(document) == BillTo(
        id="acme", name="Acme", address="1 Road", tax_id="X1"
    )
    free = {"id": None, "name": "Some Ltd", "address": None, "tax_id": None}
    assert bill_to_of_document(free) == BillTo(id=None, name="Some Ltd")
    assert bill_to_of_document(None) is None


def test_an_invoice_issued_before_customers_were_registered_names_its_customer_as_text() -> None:
    # Those documents hold the job's free-text customer as a string: reading it as an
    # object made every later invoice of the job a 500.
    assert bill_to_of_document("Old Co") == BillTo(id=None, name="Old Co")
