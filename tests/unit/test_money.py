"""Money (spec §6: decimal money in the campaign currency, half-up to the minor unit)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.money import CURRENCY_EXPONENTS, Money, zero


def test_currency_exponents_follow_iso_4217() -> None:
    expected = {
        "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "JPY": 0, "KRW": 0,
        "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4, "VND": 0,
    }  # fmt: skip
    for code, exponent in expected.items():
        assert CURRENCY_EXPONENTS[code] == exponent, code
    assert len(CURRENCY_EXPONENTS) > 150
    assert all(len(c) == 3 and c.isupper() for c in CURRENCY_EXPONENTS)
    assert "XXX" not in CURRENCY_EXPONENTS and "XAU" not in CURRENCY_EXPONENTS
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["ABC"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        ("1250", "EUR", "1250.00"),
        ("1250.5", "EUR", "1250.50"),
        ("0.01", "EUR", "0.01"),
        ("1250", "JPY", "1250"),
        ("1250.00", "JPY", "1250"),  # trailing zeros are not extra precision
        ("1.5", "BHD", "1.500"),
        ("0.001", "BHD", "0.001"),
        ("0", "KWD", "0.000"),
        ("1E+3", "USD", "1000.00"),
    ],
)
def test_money_has_exactly_the_minor_unit_digits_per_currency(
    amount: str, currency: str, wire: str
) -> None:
    money = Money.of(amount, currency)
    assert money.to_wire() == {"amount": wire, "currency": currency}
    assert money.amount == Decimal(amount)
    assert Money.from_wire(money.to_wire()) == money


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("0.005", "EUR", "0.01"),
        ("0.004999", "EUR", "0.00"),
        ("0.015", "EUR", "0.02"),
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),  # half-up, not banker's rounding
        ("2.4999", "JPY", "2"),
        ("0.0005", "BHD", "0.001"),
        ("1.2345", "BHD", "1.235"),
        ("-0.005", "EUR", "-0.01"),  # away from zero at the half
        ("-0.004", "EUR", "0.00"),  # no negative zero
    ],
)
def test_quantize_rounds_half_up_to_the_minor_unit(
    amount: str, currency: str, rounded: str
) -> None:
    money = Money(Decimal(amount), currency).quantize()
    assert money == Money(Decimal(rounded), currency)
    assert money.to_wire()["amount"] == rounded


def test_to_wire_rounds_unquantized_amounts_half_up() -> None:
    tax = Money(Decimal("12.345"), "EUR")
    assert tax.to_wire() == {"amount": "12.35", "currency": "EUR"}


@pytest.mark.parametrize("currency", ["ABC", "eur", "EURO", "", "XXX", "XAU"])
def test_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(Refusal) as refused:
        Money.of("1.00", currency)
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert "currency" in refused.value.message


@pytest.mark.parametrize(("amount", "currency"), [("-0.01", "EUR"), ("-1", "JPY")])
def test_negative_amount_is_refused(amount: str, currency: str) -> None:
    with pytest.raises(Refusal) as refused:
        Money.of(amount, currency)
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert "negative" in refused.value.message


@pytest.mark.parametrize(
    ("amount", "currency"), [("0.001", "EUR"), ("1.5", "JPY"), ("0.0001", "BHD"), ("1.1", "KRW")]
)
def test_more_decimals_than_the_minor_unit_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(Refusal) as refused:
        Money.of(amount, currency)
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert "decimals" in refused.value.message


@pytest.mark.parametrize("amount", ["abc", "", "NaN", "Infinity", "1,00"])
def test_non_numbers_are_refused(amount: str) -> None:
    with pytest.raises(Refusal) as refused:
        Money.of(amount, "EUR")
    assert refused.value.code is RefusalCode.VALIDATION_FAILED


def test_floats_are_never_money() -> None:
    with pytest.raises(TypeError):
        Money.of(0.1, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(0.1, "EUR")  # type: ignore[arg-type]


def test_negative_zero_is_plain_zero() -> None:
    assert Money.of("-0.00", "EUR").to_wire()["amount"] == "0.00"


def test_add_and_subtract_same_currency_only() -> None:
    a, b = Money.of("10.05", "EUR"), Money.of("0.95", "EUR")
    assert a + b == Money.of("11.00", "EUR")
    assert a - b == Money.of("9.10", "EUR")
    assert (b - a).amount == Decimal("-9.10")  # intermediate results may go negative
    assert b < a and a > b and a >= a and b <= b
    with pytest.raises(Refusal) as refused:
        a + Money.of("1", "USD")
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    with pytest.raises(Refusal):
        a - Money.of("1", "USD")
    with pytest.raises(Refusal):
        _ = a < Money.of("1", "USD")


def test_zero_per_currency() -> None:
    assert zero("EUR") == Money.zero("EUR") == Money.of("0", "EUR")
    assert zero("JPY").to_wire() == {"amount": "0", "currency": "JPY"}
    assert zero("BHD").to_wire() == {"amount": "0.000", "currency": "BHD"}
    assert zero("EUR").is_zero()
    with pytest.raises(Refusal):
        zero("ABC")


def test_equal_amounts_are_equal_money_whatever_their_trailing_zeros() -> None:
    assert Money(Decimal("12.5"), "EUR") == Money.of("12.50", "EUR")
    assert hash(Money(Decimal("12.5"), "EUR")) == hash(Money.of("12.50", "EUR"))
    assert Money.of("1", "EUR") != Money.of("1", "USD")


def test_refusal_is_an_exception_with_code_and_message() -> None:
    refusal = Refusal(RefusalCode.FORBIDDEN, "no")
    assert refusal.code is RefusalCode.FORBIDDEN and refusal.message == "no"
    assert str(refusal) == "forbidden: no"
    copy = pickle.loads(pickle.dumps(refusal))
    assert (copy.code, copy.message) == (refusal.code, refusal.message)
