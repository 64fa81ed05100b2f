"""The issuer of invoices, from LUC_ISSUER_*: read once, the logo checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import SettingsError
from service.settings import LOGO_MAX_BYTES, IssuerSettings, load_settings
from tests.support.images import png


def issuer(**env: str) -> IssuerSettings:
    return load_settings(env).issuer


def test_without_settings_the_issuer_is_unnamed_with_thirty_days_terms() -> None:
    assert issuer() == IssuerSettings(payment_terms_days=30)


def test_text_settings_take_a_written_newline_and_drop_surrounding_blanks() -> None:
    found = issuer(
        LUC_ISSUER_NAME="  AIMS Billing GmbH ",
        LUC_ISSUER_ADDRESS="Hauptstraße 1\\n10115 Berlin",
        LUC_ISSUER_FOOTER="line one\nline two",
        LUC_ISSUER_TAX_ID="DE123456789",
        LUC_ISSUER_PAYMENT_TERMS_DAYS="0",
    )
    assert (found.name, found.address, found.footer, found.tax_id) == (
        "AIMS Billing GmbH",
        "Hauptstraße 1\n10115 Berlin",
        "line one\nline two",
        "DE123456789",
    )
    assert found.payment_terms_days == 0  # due on receipt


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "LUC_ISSUER_PAYMENT_TERMS_DAYS must be at least 0, got -1"),
        ("366", "LUC_ISSUER_PAYMENT_TERMS_DAYS must be at most 365, got 366"),
        ("thirty", "LUC_ISSUER_PAYMENT_TERMS_DAYS must be an integer, got 'thirty'"),
    ],
)
def test_payment_terms_out_of_range_stop_the_service_naming_the_variable(
    value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        issuer(LUC_ISSUER_PAYMENT_TERMS_DAYS=value)
    assert raised.value.message == message


def test_a_logo_is_read_once_with_the_media_type_its_bytes_have(tmp_path: Path) -> None:
    logo = tmp_path / "logo.img"  # the name says nothing: the bytes do
    logo.write_bytes(png())
    found = issuer(LUC_ISSUER_LOGO=str(logo))
    assert found.logo is not None
    assert (found.logo.media_type, found.logo.data) == ("image/png", png())
    svg = tmp_path / "logo.svg"
    svg.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>')
    found = issuer(LUC_ISSUER_LOGO=str(svg))
    assert found.logo is not None and found.logo.media_type == "image/svg+xml"


def test_a_missing_unreadable_oversized_or_non_image_logo_stops_the_service(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError, match=r"LUC_ISSUER_LOGO: cannot read '.*nowhere.png'"):
        issuer(LUC_ISSUER_LOGO=str(tmp_path / "nowhere.png"))
    with pytest.raises(SettingsError, match="LUC_ISSUER_LOGO: cannot read"):
        issuer(LUC_ISSUER_LOGO=str(tmp_path))  # a folder
    text = tmp_path / "logo.png"
    text.write_text("not an image")
    with pytest.raises(SettingsError, match="is not a PNG, JPEG, GIF, WebP or SVG image"):
        issuer(LUC_ISSUER_LOGO=str(text))
    big = tmp_path / "big.png"
    big.write_bytes(png() + b"\0" * LOGO_MAX_BYTES)
    with pytest.raises(SettingsError, match="a logo may be at most 524,288 bytes"):
        issuer(LUC_ISSUER_LOGO=str(big))
