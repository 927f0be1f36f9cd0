"""Decimal money in ISO 4217 currencies (never floats).

`Money.of` is the validating constructor for amounts that come from outside (budgets,
penalties): known currency, not negative, no more decimals than the currency's minor unit.
The plain constructor only insists on a `Decimal` in a known currency, so that intermediate
results of arithmetic (tax on totals, differences) may carry extra precision or a sign until
`quantize()` rounds them half-up to the minor unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType

from campaign_worker.domain.errors import Refusal, RefusalCode

# ISO 4217 list one (active codes), currency -> number of minor-unit digits. Codes without a
# minor unit ("N.A.": precious metals, XDR, XSU, XUA, test and "no currency" codes) are not
# money a campaign can be booked in and are left out. Withdrawn codes (HRK, ANG, SLL, ZWL, ...)
# are left out too.
_EXPONENTS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
    "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2,
    "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2,
    "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0,
    "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUC": 2, "CUP": 2, "CVE": 2, "CZK": 2,
    "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2,
    "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0,
    "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2,
    "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2,
    "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2,
    "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2,
    "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2,
    "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2,
    "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0,
    "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2,
    "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2,
    "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2,
    "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2,
    "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(_EXPONENTS)


def exponent_of(currency: str) -> int:
    """Minor-unit digits of `currency`; refuses an unknown code."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"currency {currency!r} is not an active ISO 4217 code with a minor unit",
        ) from None


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent_of(currency))


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(
                f"Money.amount must be a Decimal, not {type(self.amount).__name__} "
                "(use Money.of for strings; floats are never money)"
            )
        if not self.amount.is_finite():
            raise Refusal(
                RefusalCode.VALIDATION_FAILED, f"amount {self.amount} is not a finite number"
            )
        exponent_of(self.currency)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def of(cls, amount: Decimal | str, currency: str) -> Money:
        """Validated money from outside: known currency, >= 0, fits the minor unit."""
        exponent = exponent_of(currency)
        if isinstance(amount, str):
            try:
                value = Decimal(amount.strip())
            except InvalidOperation:
                raise Refusal(
                    RefusalCode.VALIDATION_FAILED, f"amount {amount!r} is not a decimal number"
                ) from None
        elif isinstance(amount, Decimal):
            value = amount
        else:
            raise TypeError(
                f"Money.of takes a Decimal or a decimal string, not {type(amount).__name__}"
            )
        if not value.is_finite():
            raise Refusal(
                RefusalCode.VALIDATION_FAILED, f"amount {amount!r} is not a finite number"
            )
        if value < 0:
            raise Refusal(
                RefusalCode.VALIDATION_FAILED,
                f"amount {value} {currency} must not be negative",
            )
        quantized = value.quantize(_quantum(currency))
        if quantized != value:
            raise Refusal(
                RefusalCode.VALIDATION_FAILED,
                f"amount {value} {currency} has more decimals than {currency} allows ({exponent})",
            )
        return cls(quantized.copy_abs(), currency)  # copy_abs: no "-0.00"

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0).quantize(_quantum(currency)), currency)

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Money:
        """Inverse of `to_wire` (validating, like `of`)."""
        amount, currency = data.get("amount"), data.get("currency")
        if not isinstance(amount, str) or not isinstance(currency, str):
            raise Refusal(
                RefusalCode.VALIDATION_FAILED,
                "money must be {'amount': decimal string, 'currency': ISO 4217 code}",
            )
        return cls.of(amount, currency)

    # -- properties ----------------------------------------------------------------------
    @property
    def exponent(self) -> int:
        return exponent_of(self.currency)

    def is_zero(self) -> bool:
        return self.amount.is_zero()

    def is_quantized(self) -> bool:
        """True when the amount has no more digits than the minor unit allows."""
        return self.amount.quantize(_quantum(self.currency)) == self.amount

    def quantize(self) -> Money:
        """Round half-up (away from zero at the half) to the currency's minor unit."""
        value = self.amount.quantize(_quantum(self.currency), rounding=ROUND_HALF_UP)
        if value.is_zero():
            value = value.copy_abs()
        return Money(value, self.currency)

    def to_wire(self) -> dict[str, str]:
        """`{"amount": "1250.00", "currency": "EUR"}`: exactly the minor-unit digits."""
        return {"amount": format(self.quantize().amount, "f"), "currency": self.currency}

    # -- arithmetic (same currency only) --------------------------------------------------
    def _same(self, other: Money, op: str) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {op} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise Refusal(
                RefusalCode.VALIDATION_FAILED,
                f"cannot {op} {other.currency} and {self.currency}: currencies differ",
            )

    def __add__(self, other: Money) -> Money:
        self._same(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other, "subtract")
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount >= other.amount

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"


def zero(currency: str) -> Money:
    """`Money.zero(currency)` as a function."""
    return Money.zero(currency)
