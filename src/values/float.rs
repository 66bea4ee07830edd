//! INCRBYFLOAT and HINCRBYFLOAT arithmetic, digit for digit as Redis does it.
//!
//! Redis 7.0 computes these commands in C `long double`, which on x86-64
//! Linux is the x87 80-bit extended format (64-bit significand, 15-bit
//! exponent), and prints the result with `"%.17Lf"` before trimming
//! trailing zeros. An `f64` gives other digits: Redis answers `10.6` to
//! `SET k 10.5` then `INCRBYFLOAT k 0.1`, because the extended sum is within
//! 10^-17 of 10.6, while the same sum in `f64` prints as
//! `10.59999999999999964`. Since the reply is also the value stored (and
//! what a client compares against), ringkv must compute in the same format.
//!
//! Three pieces, each a port of the Redis function named:
//!
//! - [`LongDouble::parse`] is `string2ld` (`util.c`): glibc's `strtold`
//!   grammar (sign, decimal or `0x` hexadecimal significand, optional
//!   exponent, `inf`/`infinity` in any case), then Redis's rejections: an
//!   empty string or one of 5120 bytes or more (`MAX_LONG_DOUBLE_CHARS`),
//!   leading whitespace, anything left over, NaN, overflow to infinity, and
//!   an underflow that rounds to zero (a subnormal result is accepted, as
//!   Redis only rejects `ERANGE` with a zero or infinite value). Parsing is
//!   correctly rounded to nearest-even, as glibc's is.
//! - [`LongDouble::checked_add`] is `value += incr` on the x87 unit
//!   (round to nearest-even at 64 bits), `None` where Redis refuses the
//!   result as NaN or infinite.
//! - [`LongDouble::to_redis_string`] is `ld2string(.., LD_STR_HUMAN)`:
//!   glibc's `%.17Lf`, which rounds the exact binary value half-to-even,
//!   then trailing zeros and a trailing dot removed, and `-0` written `0`.
//!   The widest finite value prints in 4,952 characters, so Redis's
//!   5120-byte buffer never truncates.
//!
//! Parsing and addition use `rustc_apfloat` (the Rust port of LLVM's
//! APFloat, with the x87 format); the decimal printing is exact big-integer
//! arithmetic here, since APFloat's own printing is not `printf`'s.
//! The expected replies in the tests (`float_cases.txt`, read by
//! `float_cases.rs`) were recorded from redis-server 7.0.15 by
//! `tools/redis-float-cases.py`.

use rustc_apfloat::ieee::X87DoubleExtended;
use rustc_apfloat::{Float, Round};

/// Redis's buffer for a long double's text: `string2ld` refuses any
/// string of this length or more.
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// Exponents beyond this are clamped before conversion: with at most 5119
/// significand digits they overflow or underflow whatever the digits.
const EXP_CLAMP: i64 = 100_000;

/// A C `long double` as Redis on x86-64 holds one: never NaN.
#[derive(Clone, Copy, Debug)]
pub struct LongDouble(X87DoubleExtended);

impl PartialEq for LongDouble {
    /// Numeric equality, as C's `==`: `-0` equals `0`.
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl LongDouble {
    /// Zero: what a missing key or hash field counts as.
    pub const ZERO: LongDouble = LongDouble(X87DoubleExtended::ZERO);

    /// Reads a value as Redis's `string2ld` does, `None` where Redis
    /// replies with a "not a valid float" error.
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s.len() >= MAX_LONG_DOUBLE_CHARS {
            return None;
        }
        let (negative, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let value = if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            X87DoubleExtended::INFINITY
        } else {
            parse_finite(body)?
        };
        Some(LongDouble(if negative { -value } else { value }))
    }

    /// `self + other` in x87 extended precision, rounded to nearest-even;
    /// `None` if the sum is NaN or infinite (Redis's "increment would
    /// produce NaN or Infinity").
    pub fn checked_add(self, other: LongDouble) -> Option<LongDouble> {
        let sum = self.0.add_r(other.0, Round::NearestTiesToEven).value;
        (!sum.is_nan() && !sum.is_infinite()).then_some(LongDouble(sum))
    }

    /// Whether this is neither infinite nor NaN. (`parse` accepts `inf`;
    /// HINCRBYFLOAT refuses such an increment up front.)
    pub fn is_finite(self) -> bool {
        self.0.is_finite()
    }

    /// The value as Redis's `ld2string(.., LD_STR_HUMAN)` writes it: what
    /// INCRBYFLOAT replies and stores.
    pub fn to_redis_string(self) -> String {
        let bits = self.0.to_bits();
        let negative = (bits >> 79) & 1 == 1;
        let exp_field = ((bits >> 64) & 0x7fff) as i32;
        let mantissa = bits as u64;
        if self.0.is_infinite() {
            return if negative { "-inf" } else { "inf" }.to_string();
        }
        // |value| = mantissa * 2^exp; subnormals share the smallest normal
        // exponent (the integer bit is explicit in this format).
        let exp = exp_field.max(1) - 16383 - 63;
        let mut buf = String::with_capacity(32);
        if negative {
            buf.push('-');
        }
        if exp >= 0 {
            // An integer: "%.17Lf" writes its digits and seventeen zeros.
            buf.push_str(&shifted_decimal(mantissa, exp.unsigned_abs()));
            buf.push_str(".00000000000000000");
        } else {
            let scaled = fixed17(mantissa, exp.unsigned_abs());
            let unit = 10u128.pow(17);
            buf.push_str(&format!("{}.{:017}", scaled / unit, scaled % unit));
        }
        // Redis's trimming: zeros after the dot, then the dot, then "-0".
        let mut len = buf.trim_end_matches('0').len();
        if buf[..len].ends_with('.') {
            len -= 1;
        }
        buf.truncate(len);
        if buf == "-0" {
            buf.remove(0);
        }
        buf
    }
}

/// The reply errors of INCRBYFLOAT and HINCRBYFLOAT (without the `ERR `
/// prefix Redis puts before them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatError {
    /// The increment, or a string key's value, does not parse.
    NotAFloat,
    /// HINCRBYFLOAT: the field's value does not parse.
    HashValueNotAFloat,
    /// HINCRBYFLOAT: the increment is infinite.
    IncrementNotFinite,
    /// The sum is NaN or infinite.
    ResultNotFinite,
}

impl FloatError {
    /// Redis's error text.
    pub fn message(self) -> &'static str {
        match self {
            FloatError::NotAFloat => "value is not a valid float",
            FloatError::HashValueNotAFloat => "hash value is not a float",
            FloatError::IncrementNotFinite => "value is NaN or Infinity",
            FloatError::ResultNotFinite => "increment would produce NaN or Infinity",
        }
    }
}

/// INCRBYFLOAT on a string key holding `stored` (`None`: no key): the new
/// value, which Redis both stores and replies.
pub fn incr_by_float(stored: Option<&[u8]>, incr: &[u8]) -> Result<String, FloatError> {
    let value = match stored {
        Some(s) => LongDouble::parse(s).ok_or(FloatError::NotAFloat)?,
        None => LongDouble::ZERO,
    };
    let incr = LongDouble::parse(incr).ok_or(FloatError::NotAFloat)?;
    let sum = value.checked_add(incr).ok_or(FloatError::ResultNotFinite)?;
    Ok(sum.to_redis_string())
}

/// HINCRBYFLOAT on a field holding `stored` (`None`: no field). Redis
/// checks the increment before anything else, even the key's type: a
/// caller answering WRONGTYPE checks `LongDouble::parse(incr)` and
/// [`LongDouble::is_finite`] first to keep that order.
pub fn hincr_by_float(stored: Option<&[u8]>, incr: &[u8]) -> Result<String, FloatError> {
    let incr = LongDouble::parse(incr).ok_or(FloatError::NotAFloat)?;
    if !incr.is_finite() {
        return Err(FloatError::IncrementNotFinite);
    }
    let value = match stored {
        Some(s) => LongDouble::parse(s).ok_or(FloatError::HashValueNotAFloat)?,
        None => LongDouble::ZERO,
    };
    let sum = value.checked_add(incr).ok_or(FloatError::ResultNotFinite)?;
    Ok(sum.to_redis_string())
}

/// `strtold` on an unsigned, non-infinite number that must span all of
/// `body`: `None` for anything else glibc would stop short of (including
/// `nan`), and for results Redis refuses as out of range.
fn parse_finite(body: &[u8]) -> Option<X87DoubleExtended> {
    let (hex, digits) = match body {
        [b'0', b'x' | b'X', rest @ ..] => (true, rest),
        _ => (false, body),
    };
    let is_digit = |c: &u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    let int_len = digits.iter().take_while(|c| is_digit(c)).count();
    let (int, rest) = digits.split_at(int_len);
    let (frac, rest) = match rest {
        [b'.', after @ ..] => after.split_at(after.iter().take_while(|c| is_digit(c)).count()),
        _ => (&[][..], rest),
    };
    // No digit at all: glibc reads nothing (or just the "0" of "0x").
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let exp = match rest {
        [] => 0,
        [m, tail @ ..] if m.to_ascii_lowercase() == if hex { b'p' } else { b'e' } => {
            parse_exponent(tail)?
        }
        _ => return None,
    };
    let nonzero = int.iter().chain(frac).any(|&c| c != b'0');
    // Both strings are ASCII by construction.
    let int = std::str::from_utf8(int).ok()?;
    let frac = std::str::from_utf8(frac).ok()?;
    let text = if hex {
        format!("0x{int}.{frac}p{exp}")
    } else {
        format!("{int}{frac}e{}", exp - frac.len() as i64)
    };
    let value = X87DoubleExtended::from_str_r(&text, Round::NearestTiesToEven)
        .ok()?
        .value;
    // Overflow (ERANGE with HUGE_VAL) or underflow to zero (ERANGE with a
    // zero): Redis refuses both. A zero written as zero is fine.
    if value.is_infinite() || (value.is_zero() && nonzero) {
        return None;
    }
    Some(value)
}

/// An exponent's `[+-]digits`, all of `s`, clamped to ±[`EXP_CLAMP`].
fn parse_exponent(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().fold(0i64, |acc, &d| {
        (acc * 10 + i64::from(d - b'0')).min(EXP_CLAMP)
    });
    Some(if negative { -magnitude } else { magnitude })
}

/// `mantissa * 2^-shift * 10^17`, rounded half-to-even to an integer: the
/// digits `%.17Lf` prints for a value with a fractional part.
fn fixed17(mantissa: u64, shift: u32) -> u128 {
    // Below 2^121, so it fits; at shift >= 122 it is under one half.
    let scaled = u128::from(mantissa) * 10u128.pow(17);
    if shift >= 122 {
        return 0;
    }
    let quotient = scaled >> shift;
    let remainder = scaled - (quotient << shift);
    let half = 1u128 << (shift - 1);
    let round_up = remainder > half || (remainder == half && quotient & 1 == 1);
    quotient + u128::from(round_up)
}

/// The decimal digits of `mantissa * 2^shift`, for any shift up to the
/// largest exponent (16320): a little-endian big integer in base 2^32,
/// divided down by 10^9 one chunk at a time.
fn shifted_decimal(mantissa: u64, shift: u32) -> String {
    let wide = u128::from(mantissa) << (shift % 32);
    let mut limbs = vec![0u32; (shift / 32) as usize];
    limbs.extend([wide as u32, (wide >> 32) as u32, (wide >> 64) as u32]);
    let mut chunks = Vec::new();
    loop {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        if limbs.is_empty() {
            break;
        }
        let mut remainder = 0u64;
        for limb in limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / 1_000_000_000) as u32;
            remainder = current % 1_000_000_000;
        }
        chunks.push(remainder);
    }
    let mut out = match chunks.pop() {
        Some(top) => top.to_string(),
        None => return "0".to_string(),
    };
    for chunk in chunks.iter().rev() {
        out.push_str(&format!("{chunk:09}"));
    }
    out
}

#[cfg(test)]
#[path = "float_cases.rs"]
mod cases;

#[cfg(test)]
mod tests {
    use super::cases::{cases, Command};
    use super::*;
    use proptest::prelude::*;

    /// Every reply recorded from redis-server 7.0.15, byte for byte.
    #[test]
    fn matches_redis() {
        let cases = cases();
        let mut failures = Vec::new();
        for c in &cases {
            let (stored, incr) = (c.stored.as_deref(), &c.incr[..]);
            let got = match c.command {
                Command::S => incr_by_float(stored, incr),
                Command::H => hincr_by_float(stored, incr),
            };
            let got = got.map_err(|e| format!("ERR {}", e.message()));
            if got != c.reply {
                let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
                failures.push(format!(
                    "{:?} {:?} + {:?}: got {got:?}, Redis {:?}",
                    c.command,
                    stored.map(show),
                    show(incr),
                    c.reply
                ));
            }
        }
        assert!(cases.len() >= 1000, "the table has {} cases", cases.len());
        assert!(
            failures.is_empty(),
            "{} of {} differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    /// Why this module exists: f64 gives other digits.
    #[test]
    fn not_f64() {
        assert_eq!(incr_by_float(Some(b"10.5"), b"0.1").unwrap(), "10.6");
        assert_eq!(format!("{:.17}", 10.5f64 + 0.1), "10.59999999999999964");
    }

    /// Any finite long double from its fields: sign, 15-bit exponent field
    /// (below all ones), 63 fraction bits; the integer bit follows the
    /// exponent as the format requires.
    fn from_fields(negative: bool, exp_field: u16, fraction: u64) -> LongDouble {
        let integer_bit = u128::from(exp_field != 0) << 63;
        let bits = (u128::from(negative) << 79)
            | (u128::from(exp_field) << 64)
            | integer_bit
            | u128::from(fraction & (u64::MAX >> 1));
        LongDouble(X87DoubleExtended::from_bits(bits))
    }

    /// What Redis stores reads back as itself: INCRBYFLOAT by 0 of a value
    /// INCRBYFLOAT wrote answers the same text. Above 128 the seventeen
    /// decimals are finer than the format's spacing, so the text gives the
    /// very value back.
    fn check_round_trip(x: LongDouble) {
        let text = x.to_redis_string();
        let back = LongDouble::parse(text.as_bytes()).expect("Redis's own output parses");
        assert_eq!(back.to_redis_string(), text, "{x:?}");
        let magnitude = X87DoubleExtended::from_bits(x.0.to_bits() & !(1 << 79));
        if magnitude >= X87DoubleExtended::from_u128(128).value {
            assert!(back == x, "{text}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(negative: bool, exp_field in 0u16..0x7fff, fraction: u64) {
            check_round_trip(from_fields(negative, exp_field, fraction));
        }

        /// Whatever the bytes, parsing answers (and never panics), and
        /// what it accepts prints.
        #[test]
        fn parse_any(s in "[-+0-9.eEpPxXa-fAinINty \\t]{0,40}") {
            if let Some(x) = LongDouble::parse(s.as_bytes()) {
                if x.is_finite() {
                    x.to_redis_string();
                }
            }
        }

        #[test]
        fn round_trip_near_one(negative: bool, exp_field in 16300u16..16460, fraction: u64) {
            check_round_trip(from_fields(negative, exp_field, fraction));
        }
    }

    /// Every power of two, the largest mantissa at every exponent, and the
    /// subnormals' extremes.
    #[test]
    fn round_trip_every_exponent() {
        for exp_field in (0u16..0x7fff).step_by(61) {
            check_round_trip(from_fields(false, exp_field, 0));
            check_round_trip(from_fields(true, exp_field, u64::MAX));
        }
        check_round_trip(from_fields(false, 0x7ffe, u64::MAX));
        check_round_trip(from_fields(false, 0, 1));
    }
}
