//! Money primitives: currencies, non-negative amounts, quantities, tax rates
//! and the invoice-line arithmetic defined by the API contract.
//!
//! Every value here is built by a validating constructor, so code holding an
//! [`Amount`], [`Quantity`] or [`TaxRate`] never has to re-check sign, scale or
//! magnitude. Nothing in this module panics on user input: all arithmetic is
//! checked and string parsing is done by hand before any digits reach
//! `rust_decimal`, whose own parser accepts forms the API refuses (`_`
//! separators, for instance) and whose capacity limits we want to enforce with
//! our own error messages.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a money value was refused. Display texts end up verbatim in API 400
/// responses, so they address the API user, not the developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency code {0:?}; expected an uppercase ISO 4217 code such as \"USD\"")]
    UnknownCurrency(String),
    #[error(
        "amount {0:?} is not a plain decimal string; use digits with an optional '.' \
         and fraction, e.g. \"12.50\" (no sign, exponent, spaces or separators)"
    )]
    Malformed(String),
    #[error("amount has more decimals than {currency} allows ({max})")]
    TooManyDecimals { currency: Currency, max: u32 },
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount is too large (the maximum is 1000000000000000 major units)")]
    TooLarge,
    #[error("invalid quantity: {0}")]
    QuantityInvalid(String),
    #[error("invalid tax rate: {0}")]
    TaxRateInvalid(String),
    #[error("amount is too large to compute")]
    Overflow,
}

/// Inputs are echoed back in error messages; cap them so a megabyte of junk in
/// a request does not come back as a megabyte of error text.
fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 32;
    let mut out: String = s.chars().take(MAX_CHARS).collect();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------
// Currency
// ---------------------------------------------------------------------------

struct CurrencyInfo {
    code: &'static str,
    minor_units: u32,
}

const fn cur(code: &'static str, minor_units: u32) -> CurrencyInfo {
    CurrencyInfo { code, minor_units }
}

/// Sorted by code: `Currency::parse` binary-searches it and `Currency`'s
/// derived `Ord` (on the index) must agree with alphabetical order. Both are
/// enforced at compile time below. Minor units follow ISO 4217.
static CURRENCIES: [CurrencyInfo; 63] = [
    cur("AED", 2),
    cur("ARS", 2),
    cur("AUD", 2),
    cur("BDT", 2),
    cur("BGN", 2),
    cur("BHD", 3),
    cur("BRL", 2),
    cur("CAD", 2),
    cur("CHF", 2),
    cur("CLP", 0),
    cur("CNY", 2),
    cur("COP", 2),
    cur("CZK", 2),
    cur("DKK", 2),
    cur("EGP", 2),
    cur("EUR", 2),
    cur("GBP", 2),
    cur("GHS", 2),
    cur("HKD", 2),
    cur("HUF", 2),
    cur("IDR", 2),
    cur("ILS", 2),
    cur("INR", 2),
    cur("IQD", 3),
    cur("ISK", 0),
    cur("JOD", 3),
    cur("JPY", 0),
    cur("KES", 2),
    cur("KRW", 0),
    cur("KWD", 3),
    cur("KZT", 2),
    cur("LKR", 2),
    cur("LYD", 3),
    cur("MAD", 2),
    cur("MXN", 2),
    cur("MYR", 2),
    cur("NGN", 2),
    cur("NOK", 2),
    cur("NZD", 2),
    cur("OMR", 3),
    cur("PEN", 2),
    cur("PHP", 2),
    cur("PKR", 2),
    cur("PLN", 2),
    cur("PYG", 0),
    cur("QAR", 2),
    cur("RON", 2),
    cur("RUB", 2),
    cur("RWF", 0),
    cur("SAR", 2),
    cur("SEK", 2),
    cur("SGD", 2),
    cur("THB", 2),
    cur("TND", 3),
    cur("TRY", 2),
    cur("TWD", 2),
    cur("UAH", 2),
    cur("UGX", 0),
    cur("USD", 2),
    cur("VND", 0),
    cur("XAF", 0),
    cur("XOF", 0),
    cur("ZAR", 2),
];

/// Compile-time proof that the table is strictly sorted, made of 3-letter
/// uppercase codes, fits a `u8` index and has minor units the amount parser
/// can handle (it sizes its digit budget on at most 3 decimals).
const fn currency_table_is_valid() -> bool {
    if CURRENCIES.len() > u8::MAX as usize {
        return false;
    }
    let mut i = 0;
    while i < CURRENCIES.len() {
        let code = CURRENCIES[i].code.as_bytes();
        if code.len() != 3 || CURRENCIES[i].minor_units > MAX_MINOR_UNITS {
            return false;
        }
        let mut k = 0;
        while k < 3 {
            if !code[k].is_ascii_uppercase() {
                return false;
            }
            k += 1;
        }
        if i > 0 {
            let prev = CURRENCIES[i - 1].code.as_bytes();
            let mut j = 0;
            while j < 3 && prev[j] == code[j] {
                j += 1;
            }
            if j == 3 || prev[j] > code[j] {
                return false;
            }
        }
        i += 1;
    }
    true
}

const MAX_MINOR_UNITS: u32 = 3;

const _: () = assert!(currency_table_is_valid());

/// An ISO 4217 currency from the supported table. One byte, `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(u8);

impl Currency {
    /// Accepts the exact uppercase code only: lowercase or padded codes are
    /// refused so that stored events carry one canonical spelling.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .binary_search_by(|info| info.code.cmp(code))
            .ok()
            .and_then(|i| u8::try_from(i).ok())
            .map(Currency)
            .ok_or_else(|| MoneyError::UnknownCurrency(excerpt(code)))
    }

    pub fn code(self) -> &'static str {
        self.info().code
    }

    pub fn minor_units(self) -> u32 {
        self.info().minor_units
    }

    /// Every supported currency, in code order.
    pub fn all() -> impl Iterator<Item = Currency> {
        // The const check above guarantees the length fits in a u8.
        (0..CURRENCIES.len() as u8).map(Currency)
    }

    fn info(self) -> &'static CurrencyInfo {
        // Indices are only ever minted from positions in CURRENCIES, so this
        // cannot miss; falling back to the first entry keeps the function
        // total without a panic path.
        CURRENCIES
            .get(usize::from(self.0))
            .unwrap_or(&CURRENCIES[0])
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

// The code string is used in every format (not the table index) so that
// reordering or extending the table never changes the meaning of stored logs.
impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor {
            expecting: "an ISO 4217 currency code",
            parse: Currency::parse,
        })
    }
}

// ---------------------------------------------------------------------------
// Strict decimal lexing
// ---------------------------------------------------------------------------

/// Most digits we ever hand to `Decimal`; 10^28 - 1 fits its 96-bit mantissa.
const MAX_DECIMAL_DIGITS: usize = 28;

/// A syntactically valid plain decimal string, split into its parts.
struct Lexed<'a> {
    negative: bool,
    /// Integer digits with leading zeros removed (empty means zero), so that
    /// digit counts measure magnitude and "000…01" cannot exhaust capacity.
    int: &'a str,
    frac: &'a str,
}

/// Grammar: `-?[0-9]+(\.[0-9]+)?`. The '-' is recognised only so callers can
/// report "negative" instead of a generic syntax error.
fn lex(s: &str) -> Option<Lexed<'_>> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) if all_digits(frac) => (int, frac),
        Some(_) => return None,
        None => (body, ""),
    };
    if !all_digits(int) {
        return None;
    }
    Some(Lexed {
        negative,
        int: int.trim_start_matches('0'),
        frac,
    })
}

impl Lexed<'_> {
    /// The unsigned value, exact. `None` when there are too many digits for a
    /// `Decimal`; callers bound the digit counts first so they can give a more
    /// specific error.
    fn magnitude(&self) -> Option<Decimal> {
        if self.int.len() + self.frac.len() > MAX_DECIMAL_DIGITS {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in self.int.bytes().chain(self.frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let scale = u32::try_from(self.frac.len()).ok()?;
        Decimal::try_from_i128_with_scale(mantissa, scale).ok()
    }
}

/// Scale of the value itself, ignoring representation: a `Decimal` produced by
/// arithmetic may carry trailing zeros (4.500) that say nothing about precision.
fn value_scale(d: Decimal) -> u32 {
    d.normalize().scale()
}

/// Turns -0 into 0 so that Display, serialization and sign checks downstream
/// never see a negative zero.
fn positive_zero(mut d: Decimal) -> Decimal {
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    d
}

// ---------------------------------------------------------------------------
// Serde plumbing shared by the decimal newtypes
// ---------------------------------------------------------------------------

struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, MoneyError>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// Text for humans (JSON), the raw 16-byte `Decimal` encoding for binary
/// codecs: exact, fixed-size and cheap to decode when replaying the log.
fn serialize_decimal<S: Serializer>(
    d: Decimal,
    text: &dyn fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.collect_str(text)
    } else {
        Serialize::serialize(&d.serialize(), serializer)
    }
}

fn deserialize_decimal<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, MoneyError>,
    from_decimal: fn(Decimal) -> Result<T, MoneyError>,
) -> Result<T, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(StrVisitor {
            expecting,
            parse: from_str,
        })
    } else {
        let bytes = <[u8; 16]>::deserialize(deserializer)?;
        // Decimal::deserialize masks and clamps arbitrary bytes, so corrupt
        // input yields some value (then validated), never a panic.
        from_decimal(Decimal::deserialize(bytes)).map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Amount
// ---------------------------------------------------------------------------

/// A non-negative money amount; the currency is held by whoever holds the Amount.
///
/// Invariants: never negative (and never -0), never above
/// [`Amount::MAX_SUM_MAJOR_UNITS`]. Amounts built from user input are further
/// limited to [`Amount::MAX_MAJOR_UNITS`] and stored at exactly the currency's
/// minor-unit scale, so "4.5" and "4.50" USD are the same stored value.
///
/// Deliberately no `Add`/`Sub` operators: they would have to panic or go
/// negative; use [`Amount::checked_add`] and [`Amount::checked_sub`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Upper bound for any single amount taken from input: anything larger is
    /// an absurd magnitude for a B2B invoice and almost certainly a mistake.
    pub const MAX_MAJOR_UNITS: i64 = 1_000_000_000_000_000;

    /// Upper bound for sums (balances, invoice totals). Higher than
    /// [`Self::MAX_MAJOR_UNITS`] so that adding many legitimate amounts does not
    /// fail, yet low enough that line arithmetic on it can never overflow a
    /// `Decimal` or lose precision.
    pub const MAX_SUM_MAJOR_UNITS: i64 = 1_000_000_000_000_000_000;

    /// Parses a strictly positive amount (zero gives `NotPositive`).
    pub fn parse(currency: Currency, s: &str) -> Result<Amount, MoneyError> {
        let amount = Self::parse_non_negative(currency, s)?;
        if amount.is_zero() {
            return Err(MoneyError::NotPositive);
        }
        Ok(amount)
    }

    /// Parses an amount that may be zero.
    ///
    /// Strict on purpose: more decimals than the currency has is refused even
    /// when the extra digits are zeros ("1.500" USD), and any leading '-'
    /// (even "-0") is reported as `Negative` because signs are not part of the
    /// format.
    pub fn parse_non_negative(currency: Currency, s: &str) -> Result<Amount, MoneyError> {
        // 10^15 has 16 digits; more integer digits is TooLarge whatever follows.
        const MAX_INT_DIGITS: usize = 16;
        let lexed = lex(s).ok_or_else(|| MoneyError::Malformed(excerpt(s)))?;
        if lexed.negative {
            return Err(MoneyError::Negative);
        }
        let max = currency.minor_units();
        if lexed.frac.len() > max as usize {
            return Err(MoneyError::TooManyDecimals { currency, max });
        }
        if lexed.int.len() > MAX_INT_DIGITS {
            return Err(MoneyError::TooLarge);
        }
        let d = lexed.magnitude().ok_or(MoneyError::TooLarge)?;
        Self::from_decimal(currency, d)
    }

    /// Builds an amount from an already-computed decimal (zero allowed).
    ///
    /// Unlike string parsing, the decimal check is on the value: 4.500 is an
    /// acceptable USD amount because arithmetic often leaves trailing zeros.
    pub fn from_decimal(currency: Currency, d: Decimal) -> Result<Amount, MoneyError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative);
        }
        let max = currency.minor_units();
        if value_scale(d) > max {
            return Err(MoneyError::TooManyDecimals { currency, max });
        }
        if d > Decimal::from(Self::MAX_MAJOR_UNITS) {
            return Err(MoneyError::TooLarge);
        }
        let mut d = positive_zero(d);
        // Only drops trailing zeros or pads: the value scale was checked above,
        // and the mantissa (< 10^19) always has room for 3 more decimals.
        d.rescale(max);
        Ok(Amount(d))
    }

    /// Validation for values read back from storage or the wire, where the
    /// currency is not at hand: only the type-level invariants can be checked,
    /// and the representation (scale) is kept as stored so re-serializing an
    /// event reproduces the same bytes.
    fn from_stored(d: Decimal) -> Result<Amount, MoneyError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative);
        }
        if d > Decimal::from(Self::MAX_SUM_MAJOR_UNITS) {
            return Err(MoneyError::TooLarge);
        }
        Ok(Amount(positive_zero(d)))
    }

    fn from_stored_str(s: &str) -> Result<Amount, MoneyError> {
        let lexed = lex(s).ok_or_else(|| MoneyError::Malformed(excerpt(s)))?;
        if lexed.negative {
            return Err(MoneyError::Negative);
        }
        let d = lexed.magnitude().ok_or(MoneyError::TooLarge)?;
        Self::from_stored(d)
    }

    /// Reads back an amount written by [`Amount::format`] (read models, exports):
    /// sums up to [`Self::MAX_SUM_MAJOR_UNITS`] are accepted, signs are not.
    pub fn parse_stored(s: &str) -> Result<Amount, MoneyError> {
        Self::from_stored_str(s)
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `None` when the sum would exceed [`Self::MAX_SUM_MAJOR_UNITS`] (10^18),
    /// not the single-amount cap, so totals of many valid amounts still work.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        let sum = self.0.checked_add(other.0)?;
        if sum > Decimal::from(Self::MAX_SUM_MAJOR_UNITS) {
            return None;
        }
        Some(Amount(sum))
    }

    /// `None` when `other` is larger, since an Amount cannot be negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        if other.0 > self.0 {
            return None;
        }
        self.0
            .checked_sub(other.0)
            .map(|d| Amount(positive_zero(d)))
    }

    pub fn min(self, other: Amount) -> Amount {
        Ord::min(self, other)
    }

    /// Exactly `currency.minor_units()` decimals: 4.5 USD -> "4.50", 999 JPY
    /// -> "999". An amount with more decimals than the currency has (only
    /// possible if it was built for another currency) is rounded half away
    /// from zero rather than printed with digits the currency cannot express.
    pub fn format(self, currency: Currency) -> String {
        round_to_currency(currency, self.0).to_string()
    }
}

/// The normalized value without currency padding ("4.5", "0"); for debugging
/// and logs only, use [`Amount::format`] for anything user-facing.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.normalize(), f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The stored scale is kept in text too ("4.50"), matching what the
        // currency-aware constructors produce.
        serialize_decimal(self.0, &self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_decimal(
            deserializer,
            "a non-negative decimal amount string such as \"12.50\"",
            Amount::from_stored_str,
            Amount::from_stored,
        )
    }
}

// ---------------------------------------------------------------------------
// Quantity
// ---------------------------------------------------------------------------

/// quantity: decimal string > 0 with at most 6 decimals, at most 10^9.
/// Stored normalized, so "1.500000" and "1.5" are the same value and encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Quantity(Decimal);

impl Quantity {
    pub const MAX_DECIMALS: u32 = 6;
    pub const MAX: i64 = 1_000_000_000;

    pub fn parse(s: &str) -> Result<Quantity, MoneyError> {
        // 10^9 has 10 digits.
        const MAX_INT_DIGITS: usize = 10;
        let invalid = |why: &str| MoneyError::QuantityInvalid(why.to_owned());
        let lexed = lex(s).ok_or_else(|| {
            MoneyError::QuantityInvalid(format!(
                "{:?} is not a plain decimal string such as \"1.5\"",
                excerpt(s)
            ))
        })?;
        if lexed.negative {
            return Err(invalid("must be greater than zero"));
        }
        if lexed.frac.len() > Self::MAX_DECIMALS as usize {
            return Err(invalid("at most 6 decimals are allowed"));
        }
        if lexed.int.len() > MAX_INT_DIGITS {
            return Err(invalid("must not exceed 1000000000"));
        }
        let d = lexed
            .magnitude()
            .ok_or_else(|| invalid("must not exceed 1000000000"))?;
        Self::from_decimal(d)
    }

    /// Same rules as [`Quantity::parse`], applied to the value (trailing zeros
    /// beyond 6 decimals are tolerated since they carry no precision).
    pub fn from_decimal(d: Decimal) -> Result<Quantity, MoneyError> {
        let invalid = |why: &str| MoneyError::QuantityInvalid(why.to_owned());
        if d.is_sign_negative() || d.is_zero() {
            return Err(invalid("must be greater than zero"));
        }
        if value_scale(d) > Self::MAX_DECIMALS {
            return Err(invalid("at most 6 decimals are allowed"));
        }
        if d > Decimal::from(Self::MAX) {
            return Err(invalid("must not exceed 1000000000"));
        }
        Ok(Quantity(d.normalize()))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.normalize(), f)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_decimal(self.0, self, serializer)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_decimal(
            deserializer,
            "a positive decimal quantity string such as \"1.5\"",
            Quantity::parse,
            Quantity::from_decimal,
        )
    }
}

// ---------------------------------------------------------------------------
// TaxRate
// ---------------------------------------------------------------------------

/// taxRate: percentage, decimal string 0..=100, at most 4 decimals.
/// Stored normalized ("7.50" and "7.5" are the same value and encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TaxRate(Decimal);

impl TaxRate {
    pub const ZERO: TaxRate = TaxRate(Decimal::ZERO);
    pub const MAX_DECIMALS: u32 = 4;

    pub fn parse(s: &str) -> Result<TaxRate, MoneyError> {
        // 100 has 3 digits.
        const MAX_INT_DIGITS: usize = 3;
        let invalid = |why: &str| MoneyError::TaxRateInvalid(why.to_owned());
        let lexed = lex(s).ok_or_else(|| {
            MoneyError::TaxRateInvalid(format!(
                "{:?} is not a plain decimal percentage such as \"7.5\"",
                excerpt(s)
            ))
        })?;
        if lexed.negative {
            return Err(invalid("must be between 0 and 100"));
        }
        if lexed.frac.len() > Self::MAX_DECIMALS as usize {
            return Err(invalid("at most 4 decimals are allowed"));
        }
        if lexed.int.len() > MAX_INT_DIGITS {
            return Err(invalid("must be between 0 and 100"));
        }
        let d = lexed
            .magnitude()
            .ok_or_else(|| invalid("must be between 0 and 100"))?;
        Self::from_decimal(d)
    }

    /// Same rules as [`TaxRate::parse`], applied to the value.
    pub fn from_decimal(d: Decimal) -> Result<TaxRate, MoneyError> {
        let invalid = |why: &str| MoneyError::TaxRateInvalid(why.to_owned());
        if (d.is_sign_negative() && !d.is_zero()) || d > Decimal::ONE_HUNDRED {
            return Err(invalid("must be between 0 and 100"));
        }
        if value_scale(d) > Self::MAX_DECIMALS {
            return Err(invalid("at most 4 decimals are allowed"));
        }
        Ok(TaxRate(d.normalize()))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for TaxRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.normalize(), f)
    }
}

impl Serialize for TaxRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_decimal(self.0, self, serializer)
    }
}

impl<'de> Deserialize<'de> for TaxRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_decimal(
            deserializer,
            "a decimal percentage string between \"0\" and \"100\"",
            TaxRate::parse,
            TaxRate::from_decimal,
        )
    }
}

// ---------------------------------------------------------------------------
// Invoice-line arithmetic
// ---------------------------------------------------------------------------

/// Round half away from zero to the currency's minor units.
///
/// The result carries exactly the currency's scale (1.5 USD -> 1.50) so that
/// equal figures also print identically.
pub fn round_to_currency(currency: Currency, d: Decimal) -> Decimal {
    let dp = currency.minor_units();
    let mut rounded = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    // Widening the scale can only fail to complete for values near
    // Decimal::MAX, where rescale stops at the widest representable scale;
    // the value is unchanged either way.
    rounded.rescale(dp);
    rounded
}

/// Figures of one invoice line, exactly as the API contract defines them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LineFigures {
    pub amount: Amount,
    pub tax_amount: Amount,
}

/// Figures of one invoice line, exactly as the API contract defines them:
/// amount = quantity × unitPrice rounded half away from zero to minor units;
/// taxAmount = that rounded amount × taxRate / 100, rounded the same way.
///
/// The intermediate products are exact: quantity has at most 6 decimals and
/// the unit price at most 3 (it must be valid in `currency`, else
/// `TooManyDecimals`), and any product that could need more than 28 digits is
/// already far beyond the `TooLarge` bound. So rounding happens once, on the
/// true value, as the contract requires.
pub fn line_figures(
    currency: Currency,
    quantity: Quantity,
    unit_price: Amount,
    tax_rate: TaxRate,
) -> Result<LineFigures, MoneyError> {
    let max = currency.minor_units();
    if value_scale(unit_price.0) > max {
        return Err(MoneyError::TooManyDecimals { currency, max });
    }
    let gross = quantity
        .0
        .checked_mul(unit_price.0)
        .ok_or(MoneyError::Overflow)?;
    if gross > Decimal::from(Amount::MAX_SUM_MAJOR_UNITS) {
        // Beyond this the product may no longer be exact; it is TooLarge anyway.
        return Err(MoneyError::TooLarge);
    }
    let amount = Amount::from_decimal(currency, round_to_currency(currency, gross))?;
    let tax = amount
        .0
        .checked_mul(tax_rate.0)
        .and_then(|t| t.checked_div(Decimal::ONE_HUNDRED))
        .ok_or(MoneyError::Overflow)?;
    let tax_amount = Amount::from_decimal(currency, round_to_currency(currency, tax))?;
    Ok(LineFigures { amount, tax_amount })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn amt(code: &str, s: &str) -> Amount {
        Amount::parse_non_negative(c(code), s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn rate(s: &str) -> TaxRate {
        TaxRate::parse(s).unwrap()
    }

    fn line(code: &str, qty: &str, price: &str, r: &str) -> (String, String) {
        let cur = c(code);
        let f = line_figures(cur, q(qty), amt(code, price), rate(r)).unwrap();
        (f.amount.format(cur), f.tax_amount.format(cur))
    }

    // ---- Currency ----

    #[test]
    fn required_currencies_have_iso_minor_units() {
        let expected = [
            ("USD", 2),
            ("EUR", 2),
            ("JPY", 0),
            ("GBP", 2),
            ("CNY", 2),
            ("AUD", 2),
            ("CAD", 2),
            ("CHF", 2),
            ("HKD", 2),
            ("SGD", 2),
            ("SEK", 2),
            ("KRW", 0),
            ("NOK", 2),
            ("NZD", 2),
            ("INR", 2),
            ("MXN", 2),
            ("TWD", 2),
            ("ZAR", 2),
            ("BRL", 2),
            ("DKK", 2),
            ("PLN", 2),
            ("THB", 2),
            ("ILS", 2),
            ("IDR", 2),
            ("CZK", 2),
            ("AED", 2),
            ("TRY", 2),
            ("HUF", 2),
            ("CLP", 0),
            ("SAR", 2),
            ("PHP", 2),
            ("MYR", 2),
            ("COP", 2),
            ("RUB", 2),
            ("RON", 2),
            ("PEN", 2),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("ISK", 0),
            ("VND", 0),
            ("UGX", 0),
            ("NGN", 2),
            ("EGP", 2),
            ("PKR", 2),
            ("KZT", 2),
            ("QAR", 2),
            ("ARS", 2),
            ("BGN", 2),
            ("UAH", 2),
        ];
        for (code, minor) in expected {
            let cur = c(code);
            assert_eq!(cur.code(), code);
            assert_eq!(cur.minor_units(), minor, "{code}");
        }
        assert!(Currency::all().count() >= 40);
    }

    #[test]
    fn currency_all_is_sorted_and_round_trips() {
        let all: Vec<Currency> = Currency::all().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(all.windows(2).all(|w| w[0].code() < w[1].code()));
        for cur in all {
            assert_eq!(Currency::parse(cur.code()), Ok(cur));
            assert_eq!(cur.code().parse::<Currency>(), Ok(cur));
        }
    }

    #[test]
    fn currency_refuses_non_canonical_and_unknown_codes() {
        for bad in ["usd", "Usd", "XXX", "", "US", "USDX", " USD", "USD ", "ÜSD"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::UnknownCurrency(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!("usd".parse::<Currency>().is_err());
    }

    #[test]
    fn currency_debug_and_display_print_the_code() {
        assert_eq!(format!("{:?}", c("USD")), "USD");
        assert_eq!(c("KWD").to_string(), "KWD");
        assert_eq!(std::mem::size_of::<Currency>(), 1);
    }

    #[test]
    fn currency_serde_uses_the_code() {
        assert_eq!(serde_json::to_string(&c("EUR")).unwrap(), "\"EUR\"");
        assert_eq!(
            serde_json::from_str::<Currency>("\"JPY\"").unwrap(),
            c("JPY")
        );
        assert!(serde_json::from_str::<Currency>("\"XXX\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
        assert!(serde_json::from_str::<Currency>("3").is_err());
        let bytes = postcard::to_allocvec(&c("GBP")).unwrap();
        assert_eq!(postcard::from_bytes::<Currency>(&bytes).unwrap(), c("GBP"));
    }

    // ---- Amount parsing ----

    #[test]
    fn amount_parse_normalizes_to_currency_scale() {
        let a = amt("USD", "4.5");
        assert_eq!(a.as_decimal().scale(), 2);
        assert_eq!(a, amt("USD", "4.50"));
        assert_eq!(a, Amount::from_decimal(c("USD"), dec("4.500")).unwrap());
        assert_eq!(amt("USD", "004.5"), a);
        assert_eq!(amt("KWD", "3.765").as_decimal(), dec("3.765"));
        assert_eq!(amt("JPY", "999").as_decimal(), dec("999"));
        assert_eq!(amt("USD", "0.5").as_decimal(), dec("0.50"));
    }

    #[test]
    fn amount_malformed_strings_are_refused() {
        for bad in [
            "1e5", "1E5", "1,00", "1 000", " 1", "1 ", "+1", "", "NaN", "nan", "inf", "0x10", ".5",
            "5.", "1.2.3", "--1", "-", "-.5", "1_000", "١", "½", "1.-5", "\t1",
        ] {
            assert_eq!(
                Amount::parse(c("USD"), bad),
                Err(MoneyError::Malformed(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amount_refusals_cover_every_amount_variant() {
        let usd = c("USD");
        assert_eq!(
            Amount::parse(usd, "1.500"),
            Err(MoneyError::TooManyDecimals {
                currency: usd,
                max: 2
            })
        );
        assert_eq!(
            Amount::parse(c("JPY"), "1.0"),
            Err(MoneyError::TooManyDecimals {
                currency: c("JPY"),
                max: 0
            })
        );
        assert_eq!(
            Amount::parse(c("KWD"), "1.2345"),
            Err(MoneyError::TooManyDecimals {
                currency: c("KWD"),
                max: 3
            })
        );
        assert_eq!(Amount::parse(usd, "0"), Err(MoneyError::NotPositive));
        assert_eq!(Amount::parse(usd, "0.00"), Err(MoneyError::NotPositive));
        assert_eq!(Amount::parse(usd, "-1"), Err(MoneyError::Negative));
        assert_eq!(Amount::parse(usd, "-0"), Err(MoneyError::Negative));
        assert_eq!(
            Amount::parse_non_negative(usd, "-2.50"),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Amount::parse(usd, "1000000000000000.01"),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Amount::parse(usd, "99999999999999999999999999999999999999999"),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Amount::parse(usd, &"9".repeat(100_000)),
            Err(MoneyError::TooLarge)
        );
        assert!(Amount::parse(usd, "1000000000000000").is_ok());
        assert!(Amount::parse(usd, "1000000000000000.00").is_ok());
        assert_eq!(
            Amount::parse(usd, &format!("{}1", "0".repeat(1000))),
            Ok(amt("USD", "1"))
        );
        assert_eq!(
            Amount::parse(usd, &format!("1.{}", "0".repeat(1000))),
            Err(MoneyError::TooManyDecimals {
                currency: usd,
                max: 2
            })
        );
    }

    #[test]
    fn amount_parse_non_negative_allows_zero() {
        let z = Amount::parse_non_negative(c("USD"), "0").unwrap();
        assert!(z.is_zero());
        assert_eq!(z, Amount::ZERO);
        assert_eq!(z.format(c("USD")), "0.00");
    }

    #[test]
    fn amount_from_decimal_checks() {
        let usd = c("USD");
        assert_eq!(
            Amount::from_decimal(usd, dec("-0.01")),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Amount::from_decimal(usd, dec("0.001")),
            Err(MoneyError::TooManyDecimals {
                currency: usd,
                max: 2
            })
        );
        assert_eq!(
            Amount::from_decimal(usd, dec("1000000000000000.01")),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Amount::from_decimal(usd, Decimal::MAX),
            Err(MoneyError::TooLarge)
        );
        let neg_zero = Amount::from_decimal(usd, dec("-0.00")).unwrap();
        assert!(!neg_zero.as_decimal().is_sign_negative());
        assert_eq!(neg_zero.format(usd), "0.00");
    }

    #[test]
    fn error_messages_are_user_facing() {
        let usd = c("USD");
        assert_eq!(
            Amount::parse(usd, "1.234").unwrap_err().to_string(),
            "amount has more decimals than USD allows (2)"
        );
        assert_eq!(
            MoneyError::NotPositive.to_string(),
            "amount must be greater than zero"
        );
        assert_eq!(
            MoneyError::Negative.to_string(),
            "amount must not be negative"
        );
        assert!(MoneyError::TooLarge.to_string().contains("too large"));
        assert!(MoneyError::Overflow.to_string().contains("too large"));
        assert!(Currency::parse("usd")
            .unwrap_err()
            .to_string()
            .contains("\"usd\""));
        assert!(Amount::parse(usd, "1e5")
            .unwrap_err()
            .to_string()
            .contains("\"1e5\""));
        assert_eq!(
            Quantity::parse("0").unwrap_err().to_string(),
            "invalid quantity: must be greater than zero"
        );
        assert_eq!(
            TaxRate::parse("101").unwrap_err().to_string(),
            "invalid tax rate: must be between 0 and 100"
        );
        // Huge inputs are not echoed back whole.
        let long = "x".repeat(10_000);
        assert!(Amount::parse(usd, &long).unwrap_err().to_string().len() < 300);
        assert!(Currency::parse(&long).unwrap_err().to_string().len() < 300);
    }

    // ---- Amount arithmetic & formatting ----

    #[test]
    fn amount_format_uses_exact_minor_units() {
        assert_eq!(amt("USD", "4.5").format(c("USD")), "4.50");
        assert_eq!(amt("JPY", "999").format(c("JPY")), "999");
        assert_eq!(amt("KWD", "3.765").format(c("KWD")), "3.765");
        assert_eq!(Amount::ZERO.format(c("USD")), "0.00");
        assert_eq!(Amount::ZERO.format(c("JPY")), "0");
        assert_eq!(Amount::ZERO.format(c("BHD")), "0.000");
        assert_eq!(
            amt("USD", "1000000000000000").format(c("USD")),
            "1000000000000000.00"
        );
        // Formatting in a currency with fewer decimals rounds half away from zero.
        assert_eq!(amt("KWD", "0.125").format(c("USD")), "0.13");
        assert_eq!(amt("USD", "2.50").format(c("JPY")), "3");
    }

    #[test]
    fn amount_display_is_normalized() {
        assert_eq!(amt("USD", "4.50").to_string(), "4.5");
        assert_eq!(amt("USD", "4.00").to_string(), "4");
        assert_eq!(Amount::ZERO.to_string(), "0");
    }

    #[test]
    fn amount_checked_ops() {
        let a = amt("USD", "10.00");
        let b = amt("USD", "2.5");
        assert_eq!(a.checked_sub(b), Some(amt("USD", "7.50")));
        assert_eq!(b.checked_sub(a), None);
        let zero = a.checked_sub(a).unwrap();
        assert!(zero.is_zero() && !zero.as_decimal().is_sign_negative());
        assert_eq!(a.checked_add(b), Some(amt("USD", "12.50")));
        assert_eq!(a.min(b), b);
        assert_eq!(b.min(a), b);

        // Sums may exceed the single-amount cap up to 10^18.
        let max = amt("USD", "1000000000000000");
        let mut total = Amount::ZERO;
        for _ in 0..1000 {
            total = total.checked_add(max).unwrap();
        }
        assert_eq!(
            total.as_decimal(),
            Decimal::from(Amount::MAX_SUM_MAJOR_UNITS)
        );
        assert_eq!(total.checked_add(amt("USD", "0.01")), None);
        assert_eq!(total.checked_add(Amount::ZERO), Some(total));
    }

    #[test]
    fn amount_equality_and_hash_ignore_representation() {
        use std::collections::HashSet;
        let a = Amount::from_decimal(c("KWD"), dec("4.5")).unwrap();
        let b = amt("USD", "4.50");
        assert_eq!(a, b);
        let set: HashSet<Amount> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(amt("USD", "4.49") < b);
    }

    // ---- Amount serde ----

    #[test]
    fn amount_serde_json_is_a_decimal_string() {
        let a = amt("USD", "4.5");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"4.50\"");
        let back: Amount = serde_json::from_str("\"4.50\"").unwrap();
        assert_eq!(back, a);
        assert_eq!(back.as_decimal().scale(), 2);
        assert_eq!(
            serde_json::from_str::<Amount>("\"0\"").unwrap(),
            Amount::ZERO
        );
        for bad in [
            "\"-1\"", "\"1e5\"", "\"\"", "4.5", "\"abc\"", "\" 1\"", "null",
        ] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Amount>("\"1000000000000000001\"").is_err());
    }

    #[test]
    fn amount_postcard_is_16_exact_bytes() {
        let a = amt("KWD", "3.765");
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes.as_slice(), a.as_decimal().serialize().as_slice());
        let back: Amount = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.as_decimal().scale(), 3);

        let neg = dec("-1.00").serialize();
        assert!(postcard::from_bytes::<Amount>(&neg).is_err());
        let too_big = Decimal::MAX.serialize();
        assert!(postcard::from_bytes::<Amount>(&too_big).is_err());
        let neg_zero = dec("-0.00").serialize();
        let z: Amount = postcard::from_bytes(&neg_zero).unwrap();
        assert!(z.is_zero() && !z.as_decimal().is_sign_negative());
        assert!(postcard::from_bytes::<Amount>(&[0u8; 15]).is_err());
    }

    // ---- Quantity & TaxRate ----

    #[test]
    fn quantity_parse_and_display() {
        assert_eq!(q("1.500000").to_string(), "1.5");
        assert_eq!(q("2").to_string(), "2");
        assert_eq!(q("1.500000"), q("1.5"));
        assert_eq!(q("0.000001").as_decimal(), dec("0.000001"));
        assert_eq!(q("1000000000").to_string(), "1000000000");
    }

    #[test]
    fn quantity_refusals() {
        for bad in [
            "0",
            "0.000000",
            "-1",
            "-0",
            "1.0000001",
            "1000000000.000001",
            "10000000000",
            "1e3",
            "",
            " 1",
            "+1",
            ".5",
            "5.",
            "NaN",
        ] {
            assert!(
                matches!(Quantity::parse(bad), Err(MoneyError::QuantityInvalid(_))),
                "{bad:?}"
            );
        }
        assert!(Quantity::from_decimal(dec("1.50000000")).is_ok());
        assert!(Quantity::from_decimal(dec("0.0000001")).is_err());
    }

    #[test]
    fn tax_rate_parse_and_display() {
        assert_eq!(rate("7.50").to_string(), "7.5");
        assert_eq!(rate("0").to_string(), "0");
        assert_eq!(rate("20").to_string(), "20");
        assert_eq!(rate("100.0000").to_string(), "100");
        assert_eq!(rate("0.0001").as_decimal(), dec("0.0001"));
        assert_eq!(rate("0"), TaxRate::ZERO);
        assert_eq!(TaxRate::default(), TaxRate::ZERO);
    }

    #[test]
    fn tax_rate_refusals() {
        for bad in [
            "-1", "-0", "100.0001", "101", "1000", "7.12345", "", "7,5", "7.5%", "1e1", ".5", "5.",
        ] {
            assert!(
                matches!(TaxRate::parse(bad), Err(MoneyError::TaxRateInvalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn quantity_and_tax_rate_serde() {
        let qty = q("1.500000");
        assert_eq!(serde_json::to_string(&qty).unwrap(), "\"1.5\"");
        assert_eq!(serde_json::from_str::<Quantity>("\"1.5\"").unwrap(), qty);
        assert!(serde_json::from_str::<Quantity>("\"0\"").is_err());
        let bytes = postcard::to_allocvec(&qty).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(postcard::from_bytes::<Quantity>(&bytes).unwrap(), qty);
        assert!(postcard::from_bytes::<Quantity>(&Decimal::ZERO.serialize()).is_err());

        let r = rate("7.5");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"7.5\"");
        assert_eq!(serde_json::from_str::<TaxRate>("\"7.5\"").unwrap(), r);
        assert!(serde_json::from_str::<TaxRate>("\"101\"").is_err());
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(postcard::from_bytes::<TaxRate>(&bytes).unwrap(), r);
        assert!(postcard::from_bytes::<TaxRate>(&dec("-5").serialize()).is_err());
    }

    // ---- Rounding & line figures (API contract examples) ----

    #[test]
    fn round_to_currency_is_half_away_from_zero() {
        assert_eq!(
            round_to_currency(c("USD"), dec("0.125")).to_string(),
            "0.13"
        );
        assert_eq!(
            round_to_currency(c("USD"), dec("0.135")).to_string(),
            "0.14"
        );
        assert_eq!(
            round_to_currency(c("USD"), dec("0.1249999")).to_string(),
            "0.12"
        );
        assert_eq!(
            round_to_currency(c("USD"), dec("-0.125")).to_string(),
            "-0.13"
        );
        assert_eq!(round_to_currency(c("JPY"), dec("2.5")).to_string(), "3");
        assert_eq!(round_to_currency(c("JPY"), dec("3.5")).to_string(), "4");
        assert_eq!(
            round_to_currency(c("KWD"), dec("0.0005")).to_string(),
            "0.001"
        );
        assert_eq!(round_to_currency(c("USD"), dec("1.5")).to_string(), "1.50");
        // Must not panic at the edges of Decimal's range.
        let _ = round_to_currency(c("KWD"), Decimal::MAX);
        let _ = round_to_currency(c("KWD"), Decimal::MIN);
    }

    #[test]
    fn line_contract_usd_fractional_quantity() {
        // 1.5 × 0.99 = 1.485 -> 1.49; 50 % of 1.49 = 0.745 -> 0.75
        assert_eq!(
            line("USD", "1.5", "0.99", "50"),
            ("1.49".into(), "0.75".into())
        );
        assert_eq!(
            line("USD", "1.5", "0.99", "0"),
            ("1.49".into(), "0.00".into())
        );
    }

    #[test]
    fn line_contract_jpy() {
        // 3 × 333 = 999; 10 % = 99.9 -> 100
        assert_eq!(line("JPY", "3", "333", "10"), ("999".into(), "100".into()));
    }

    #[test]
    fn line_contract_kwd() {
        assert_eq!(
            line("KWD", "1", "3.765", "0"),
            ("3.765".into(), "0.000".into())
        );
        // 3.765 × 10 % = 0.3765 -> 0.377
        assert_eq!(
            line("KWD", "1", "3.765", "10"),
            ("3.765".into(), "0.377".into())
        );
    }

    #[test]
    fn line_rounds_midpoints_away_from_zero() {
        // 0.5 × 0.25 = 0.125 -> 0.13
        assert_eq!(
            line("USD", "0.5", "0.25", "0"),
            ("0.13".into(), "0.00".into())
        );
        // 0.5 × 5 = 2.5 JPY -> 3; 50 % of 3 = 1.5 -> 2
        assert_eq!(line("JPY", "0.5", "5", "50"), ("3".into(), "2".into()));
        // tax uses the rounded amount: 0.13 × 50 % = 0.065 -> 0.07
        assert_eq!(
            line("USD", "0.5", "0.25", "50"),
            ("0.13".into(), "0.07".into())
        );
    }

    #[test]
    fn line_figures_refuses_absurd_values_without_panicking() {
        let usd = c("USD");
        let big = amt("USD", "1000000000000000");
        assert_eq!(
            line_figures(usd, q("1000000000"), big, rate("100")),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            line_figures(usd, q("1.000001"), big, rate("0")),
            Err(MoneyError::TooLarge)
        );
        // The largest Amount that can exist (a 10^18 sum) times the largest quantity.
        let mut total = Amount::ZERO;
        for _ in 0..1000 {
            total = total.checked_add(big).unwrap();
        }
        assert_eq!(
            line_figures(usd, q("1000000000"), total, rate("100")),
            Err(MoneyError::TooLarge)
        );
        // A unit price with more decimals than the currency allows.
        assert_eq!(
            line_figures(usd, q("1"), amt("KWD", "0.001"), TaxRate::ZERO),
            Err(MoneyError::TooManyDecimals {
                currency: usd,
                max: 2
            })
        );
        // Exactly at the cap is fine.
        let f = line_figures(usd, q("1"), big, rate("100")).unwrap();
        assert_eq!(f.amount, big);
        assert_eq!(f.tax_amount, big);
    }

    #[test]
    fn line_figures_zero_price_is_zero() {
        let f = line_figures(c("USD"), q("3"), Amount::ZERO, rate("20")).unwrap();
        assert!(f.amount.is_zero() && f.tax_amount.is_zero());
    }

    // ---- Properties ----

    fn currency_strategy() -> impl Strategy<Value = Currency> {
        prop::sample::select(Currency::all().collect::<Vec<_>>())
    }

    /// Amounts valid for the currency, biased towards small values as well as
    /// spanning the full range up to MAX_MAJOR_UNITS.
    fn amount_for(currency: Currency) -> impl Strategy<Value = Amount> {
        let minor = currency.minor_units();
        let max_minor = Amount::MAX_MAJOR_UNITS * 10i64.pow(minor);
        prop_oneof![0i64..1_000, 0i64..10_000_000, 0i64..=max_minor]
            .prop_map(move |m| Amount::from_decimal(currency, Decimal::new(m, minor)).unwrap())
    }

    fn currency_and_amount() -> impl Strategy<Value = (Currency, Amount)> {
        currency_strategy().prop_flat_map(|cur| (Just(cur), amount_for(cur)))
    }

    fn quantity_string() -> impl Strategy<Value = String> {
        (
            prop_oneof![1i64..100, 1i64..1_000_000_000, 1i64..=1_000_000_000_000_000],
            0u32..=6,
        )
            .prop_map(|(m, scale)| Decimal::new(m, scale).to_string())
    }

    fn rate_string() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just(0i64), 0i64..=100, 0i64..=1_000_000],
            0u32..=4,
        )
            .prop_map(|(m, scale)| Decimal::new(m, scale).to_string())
    }

    /// Reference rounding on integers: n / 10^k, half away from zero (n >= 0).
    fn round_scaled(n: i128, k: u32) -> i128 {
        let d = 10i128.pow(k);
        let (quot, rem) = (n / d, n % d);
        if rem * 2 >= d {
            quot + 1
        } else {
            quot
        }
    }

    proptest! {
        #[test]
        fn parse_format_round_trip((cur, a) in currency_and_amount()) {
            let text = a.format(cur);
            let back = Amount::parse_non_negative(cur, &text).unwrap();
            prop_assert_eq!(back, a);
            prop_assert_eq!(back.as_decimal().scale(), a.as_decimal().scale());
            prop_assert_eq!(back.format(cur), text);
        }

        #[test]
        fn serde_round_trips((_cur, a) in currency_and_amount()) {
            let json = serde_json::to_string(&a).unwrap();
            let from_json: Amount = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(from_json.as_decimal().serialize(), a.as_decimal().serialize());
            let bytes = postcard::to_allocvec(&a).unwrap();
            let from_bytes: Amount = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(from_bytes.as_decimal().serialize(), a.as_decimal().serialize());
        }

        #[test]
        fn line_figures_match_integer_reference(
            (cur, price) in currency_and_amount(),
            qty in quantity_string(),
            r in rate_string(),
        ) {
            let (Ok(qty), Ok(r)) = (Quantity::parse(&qty), TaxRate::parse(&r)) else {
                return Ok(());
            };
            let minor = cur.minor_units();
            let (qd, pd, rd) = (qty.as_decimal(), price.as_decimal(), r.as_decimal());
            // Reference: exact integer arithmetic on mantissas.
            let gross = qd.mantissa() * pd.mantissa();
            let gross_scale = qd.scale() + pd.scale();
            let amount_minor = round_scaled(gross, gross_scale - minor);
            let cap = i128::from(Amount::MAX_MAJOR_UNITS) * 10i128.pow(minor);

            match line_figures(cur, qty, price, r) {
                Ok(f) => {
                    prop_assert!(f.amount.as_decimal().scale() <= minor);
                    prop_assert!(f.tax_amount.as_decimal().scale() <= minor);
                    prop_assert!(value_scale(f.amount.as_decimal()) <= minor);
                    prop_assert!(f.tax_amount <= f.amount);
                    prop_assert_eq!(f.amount.as_decimal(), Decimal::from_i128_with_scale(amount_minor, minor));
                    // amount_minor × rate (scale r) / 100 -> scale minor + r + 2
                    let tax_minor = round_scaled(amount_minor * rd.mantissa(), rd.scale() + 2);
                    prop_assert_eq!(f.tax_amount.as_decimal(), Decimal::from_i128_with_scale(tax_minor, minor));
                }
                Err(e) => {
                    prop_assert_eq!(e, MoneyError::TooLarge);
                    prop_assert!(amount_minor > cap);
                }
            }
        }

        #[test]
        fn checked_sub_never_negative(
            (cur, a) in currency_and_amount(),
            b_seed in any::<u64>(),
        ) {
            let b = Amount::from_decimal(
                cur,
                Decimal::new((b_seed % 2_000_000) as i64, cur.minor_units()),
            ).unwrap();
            for (x, y) in [(a, b), (b, a), (a, a)] {
                match x.checked_sub(y) {
                    Some(r) => {
                        prop_assert!(!r.as_decimal().is_sign_negative());
                        prop_assert!(y <= x);
                        prop_assert_eq!(r.checked_add(y), Some(x));
                    }
                    None => prop_assert!(y > x),
                }
            }
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}", t in "[-+0-9.,eE _]{0,40}") {
            let cur = Currency::parse("USD").unwrap();
            for input in [&s, &t] {
                let _ = Amount::parse(cur, input);
                let _ = Amount::parse_non_negative(cur, input);
                let _ = Quantity::parse(input);
                let _ = TaxRate::parse(input);
                let _ = Currency::parse(input);
                let _ = serde_json::from_value::<Amount>(serde_json::Value::String(input.clone()));
            }
        }

        #[test]
        fn binary_decoding_never_panics(bytes in any::<[u8; 16]>()) {
            if let Ok(a) = postcard::from_bytes::<Amount>(&bytes) {
                prop_assert!(!a.as_decimal().is_sign_negative());
            }
            let _ = postcard::from_bytes::<Quantity>(&bytes);
            let _ = postcard::from_bytes::<TaxRate>(&bytes);
        }
    }
}
