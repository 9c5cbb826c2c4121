//! Turning result columns into [`Value`]s exactly.
//!
//! NUMERIC is decoded from PostgreSQL's binary format into its exact decimal text (never
//! through f64, and never through rust_decimal's own decoder, which silently rounds past 28
//! digits), then held as a `Decimal` only when that is lossless. Types without a native
//! decoder are read as text from a session pinned to UTC / ISO, so timestamps compare the same
//! whatever the server's or the role's TimeZone.

use std::error::Error;

use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

use crate::model::{Column, Kind, Value, numeric_from_text};

/// How one result column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Bool,
    I16,
    I32,
    I64,
    Oid,
    Numeric,
    F32,
    F64,
    Text,
}

impl Decoder {
    /// The decoder for a server type, or `None` when the column must be cast to text.
    pub fn for_type(ty: &Type) -> Option<Decoder> {
        Some(match *ty {
            Type::BOOL => Decoder::Bool,
            Type::INT2 => Decoder::I16,
            Type::INT4 => Decoder::I32,
            Type::INT8 => Decoder::I64,
            Type::OID => Decoder::Oid,
            Type::NUMERIC => Decoder::Numeric,
            Type::FLOAT4 => Decoder::F32,
            Type::FLOAT8 => Decoder::F64,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Decoder::Text,
            _ => return None,
        })
    }

    pub fn kind(self) -> Kind {
        match self {
            Decoder::Bool => Kind::Bool,
            Decoder::I16 | Decoder::I32 | Decoder::I64 | Decoder::Oid => Kind::Int,
            Decoder::Numeric => Kind::Decimal,
            Decoder::F32 | Decoder::F64 => Kind::Float,
            Decoder::Text => Kind::Text,
        }
    }

    pub fn column(self, name: &str) -> Column {
        Column {
            name: name.to_string(),
            kind: self.kind(),
        }
    }
}

/// Read cell `i` of `row`.
pub fn decode(row: &Row, i: usize, d: Decoder) -> Result<Value, tokio_postgres::Error> {
    fn opt<T, F: FnOnce(T) -> Value>(v: Option<T>, f: F) -> Value {
        v.map_or(Value::Null, f)
    }
    Ok(match d {
        Decoder::Bool => opt(row.try_get::<_, Option<bool>>(i)?, Value::Bool),
        Decoder::I16 => opt(row.try_get::<_, Option<i16>>(i)?, |x| {
            Value::Int(i64::from(x))
        }),
        Decoder::I32 => opt(row.try_get::<_, Option<i32>>(i)?, |x| {
            Value::Int(i64::from(x))
        }),
        Decoder::I64 => opt(row.try_get::<_, Option<i64>>(i)?, Value::Int),
        Decoder::Oid => opt(row.try_get::<_, Option<u32>>(i)?, |x| {
            Value::Int(i64::from(x))
        }),
        Decoder::Numeric => opt(row.try_get::<_, Option<ExactNumeric>>(i)?, |x| match x {
            ExactNumeric::Dec(d) => Value::Dec(d),
            ExactNumeric::Text(t) => numeric_from_text(&t),
        }),
        Decoder::F32 => opt(row.try_get::<_, Option<f32>>(i)?, |x| {
            Value::Float(f64::from(x))
        }),
        Decoder::F64 => opt(row.try_get::<_, Option<f64>>(i)?, Value::Float),
        Decoder::Text => opt(row.try_get::<_, Option<String>>(i)?, |t| {
            Value::Text(t.into())
        }),
    })
}

/// A NUMERIC, exactly: a `Decimal` when it fits without rounding (the common case, decoded
/// straight from the binary digits), else its exact decimal text (`NaN`, `Infinity` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExactNumeric {
    Dec(rust_decimal::Decimal),
    Text(String),
}

impl<'a> FromSql<'a> for ExactNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        if let Some(d) = numeric_binary_to_decimal(raw) {
            return Ok(ExactNumeric::Dec(d));
        }
        numeric_binary_to_text(raw)
            .map(ExactNumeric::Text)
            .map_err(Into::into)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// The fast path: binary NUMERIC straight to a `Decimal`, or `None` when it would not be exact
/// (more than 28 decimal places, a mantissa beyond 96 bits, NaN/Infinity, malformed input);
/// the caller then takes the text path.
pub fn numeric_binary_to_decimal(raw: &[u8]) -> Option<rust_decimal::Decimal> {
    let word = |i: usize| {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(i16::from_be_bytes(word(1)?.to_be_bytes()));
    let sign = word(2)?;
    let dscale = word(3)?;
    if (sign != 0x0000 && sign != 0x4000) || dscale > 28 || raw.len() != 8 + ndigits * 2 {
        return None;
    }
    // mantissa = value * 10^dscale; digit i is worth 10^(4*(weight - i) + dscale).
    let mut mantissa: i128 = 0;
    for i in 0..ndigits {
        let d = i128::from(word(4 + i)?);
        if d > 9999 {
            return None;
        }
        let exp = 4 * (weight - i32::try_from(i).ok()?) + i32::from(dscale);
        let term = if exp >= 0 {
            d.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
        } else {
            let div = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
            if d % div != 0 {
                return None;
            }
            d / div
        };
        mantissa = mantissa.checked_add(term)?;
    }
    if sign == 0x4000 {
        mantissa = -mantissa;
    }
    rust_decimal::Decimal::try_from_i128_with_scale(mantissa, u32::from(dscale)).ok()
}

/// Decode PostgreSQL's binary NUMERIC: ndigits, weight, sign, dscale (all 16-bit, big
/// endian), then `ndigits` base-10000 digits. The value is sum(digit[i] * 10000^(weight-i));
/// `dscale` is the number of decimal places PostgreSQL prints.
pub fn numeric_binary_to_text(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC value".to_string())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(i16::from_be_bytes(word(1)?.to_be_bytes()));
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0x0000 | 0x4000 => {}
        other => return Err(format!("invalid NUMERIC sign {other:#x}")),
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d > 9999 {
            return Err(format!("invalid NUMERIC digit {d}"));
        }
        digits.push(d);
    }
    let digit_at = |idx: i32| -> u16 {
        usize::try_from(idx)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 && digits.iter().any(|&d| d != 0) {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit_at(i);
            if i == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut idx = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit_at(idx)));
            idx += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [
            ndigits,
            u16::from_be_bytes(weight.to_be_bytes()),
            sign,
            dscale,
        ] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn decodes_exactly() {
        // 12345.6789 = [1, 2345, 6789] weight 1
        assert_eq!(
            numeric_binary_to_text(&enc(3, 1, 0, 4, &[1, 2345, 6789])).unwrap(),
            "12345.6789"
        );
        // -0.0012 with dscale 4: digits [12] weight -1
        assert_eq!(
            numeric_binary_to_text(&enc(1, -1, 0x4000, 4, &[12])).unwrap(),
            "-0.0012"
        );
        // 1e-29, dscale 29: digit 1000 at weight -8 (10^-32 * 1000)
        assert_eq!(
            numeric_binary_to_text(&enc(1, -8, 0, 29, &[1000])).unwrap(),
            "0.00000000000000000000000000001"
        );
        // 100.00: [100] weight 0 dscale 2
        assert_eq!(
            numeric_binary_to_text(&enc(1, 0, 0, 2, &[100])).unwrap(),
            "100.00"
        );
        // 20000 = [2] weight 1
        assert_eq!(
            numeric_binary_to_text(&enc(1, 1, 0, 0, &[2])).unwrap(),
            "20000"
        );
        assert_eq!(
            numeric_binary_to_text(&enc(0, 0, 0, 2, &[])).unwrap(),
            "0.00"
        );
        assert_eq!(
            numeric_binary_to_text(&enc(0, 0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
        // The fast path agrees with the text path, keeps the scale, and declines what it
        // cannot hold exactly.
        for raw in [
            enc(3, 1, 0, 4, &[1, 2345, 6789]),
            enc(1, -1, 0x4000, 4, &[12]),
            enc(1, 0, 0, 2, &[100]),
            enc(1, 1, 0, 0, &[2]),
            enc(0, 0, 0, 2, &[]),
            enc(2, 3, 0, 4, &[999, 9999]),
        ] {
            let fast = numeric_binary_to_decimal(&raw).unwrap();
            assert_eq!(fast.to_string(), numeric_binary_to_text(&raw).unwrap());
        }
        assert_eq!(numeric_binary_to_decimal(&enc(1, -8, 0, 29, &[1000])), None);
        assert_eq!(numeric_binary_to_decimal(&enc(0, 0, 0xC000, 0, &[])), None);
        // 10^32: beyond 96 bits.
        assert_eq!(numeric_binary_to_decimal(&enc(1, 8, 0, 0, &[1])), None);
        assert!(numeric_binary_to_text(&[0, 1]).is_err());
    }
}
