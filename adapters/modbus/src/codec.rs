//! Register contents to values and back: data types, byte orders, `bit`, scale and offset.
//!
//! Pure functions, no I/O. A point's registers are first put into canonical big-endian byte
//! order (`ABCD…`: the most significant byte first) according to its [`ByteOrder`], then read as
//! its [`DataType`], then scaled (`value = raw × scale + offset`). Writes go the other way:
//! the inverse scale, a range check against the data type (a value that does not fit is refused,
//! never truncated or wrapped), then the byte order. Floats that are NaN or infinite are not
//! values: decoding reports [`DecodeError::NotANumber`] and the caller marks the point bad.

use std::fmt;

use gateway_api::Value;

/// How a point's registers are read. Spellings are case-insensitive; Telegraf's
/// (`INT16`, `UINT32`, `FLOAT32-IEEE`, `FLOAT64-IEEE`, `BIT`) and Home Assistant's are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
    String,
}

/// Every accepted spelling (lower case) and what it means.
const DATA_TYPE_NAMES: &[(&str, DataType)] = &[
    ("bool", DataType::Bool),
    ("boolean", DataType::Bool),
    ("bit", DataType::Bool),
    ("int16", DataType::Int16),
    ("uint16", DataType::Uint16),
    ("int32", DataType::Int32),
    ("uint32", DataType::Uint32),
    ("int64", DataType::Int64),
    ("uint64", DataType::Uint64),
    ("float32", DataType::Float32),
    ("float32-ieee", DataType::Float32),
    ("float", DataType::Float32),
    ("float64", DataType::Float64),
    ("float64-ieee", DataType::Float64),
    ("double", DataType::Float64),
    ("string", DataType::String),
];

impl DataType {
    /// The canonical names, for messages.
    pub const NAMES: &'static [&'static str] = &[
        "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
        "string",
    ];

    /// Parses a spelling users know (case-insensitive), `None` if unknown.
    pub fn parse(text: &str) -> Option<DataType> {
        let lower = text.trim().to_ascii_lowercase();
        DATA_TYPE_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, t)| *t)
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int16 => "int16",
            DataType::Uint16 => "uint16",
            DataType::Int32 => "int32",
            DataType::Uint32 => "uint32",
            DataType::Int64 => "int64",
            DataType::Uint64 => "uint64",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
            DataType::String => "string",
        }
    }

    /// Registers one value occupies; `length` is a string's register count.
    pub fn registers(self, length: u16) -> u16 {
        match self {
            DataType::Bool | DataType::Int16 | DataType::Uint16 => 1,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => 2,
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => 4,
            DataType::String => length,
        }
    }

    /// The smallest and largest raw value of an integer type.
    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
            DataType::Uint16 => (0, u16::MAX.into()),
            DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
            DataType::Uint32 => (0, u32::MAX.into()),
            DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
            DataType::Uint64 => (0, u64::MAX.into()),
            _ => return None,
        })
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, DataType::Bool | DataType::String)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The order of a value's bytes in its registers, named by where the bytes of the big-endian
/// value `ABCD` end up. The same names serve 16-bit (`AB`/`BA`) and 64-bit values
/// (`ABCDEFGH`, `HGFEDCBA`, `BADCFEHG`, `GHEFCDAB`): it is two independent switches, "bytes
/// swapped inside each register" and "registers in reverse order".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Big-endian: the first register holds the most significant word, high byte first.
    #[default]
    Abcd,
    /// Little-endian: registers reversed and bytes swapped.
    Dcba,
    /// Bytes swapped inside each register, registers in order.
    Badc,
    /// Registers reversed ("word swap"), bytes in order. Common for floats.
    Cdab,
}

/// Every accepted spelling (lower case) and what it means. Home Assistant's `swap` values
/// (`none`, `byte`, `word`, `word_byte`) are aliases.
const BYTE_ORDER_NAMES: &[(&str, ByteOrder)] = &[
    ("abcd", ByteOrder::Abcd),
    ("ab", ByteOrder::Abcd),
    ("abcdefgh", ByteOrder::Abcd),
    ("big", ByteOrder::Abcd),
    ("big-endian", ByteOrder::Abcd),
    ("none", ByteOrder::Abcd),
    ("dcba", ByteOrder::Dcba),
    ("ba", ByteOrder::Dcba),
    ("hgfedcba", ByteOrder::Dcba),
    ("little", ByteOrder::Dcba),
    ("little-endian", ByteOrder::Dcba),
    ("word_byte", ByteOrder::Dcba),
    ("badc", ByteOrder::Badc),
    ("badcfehg", ByteOrder::Badc),
    ("byte", ByteOrder::Badc),
    ("cdab", ByteOrder::Cdab),
    ("ghefcdab", ByteOrder::Cdab),
    ("word", ByteOrder::Cdab),
];

impl ByteOrder {
    pub const NAMES: &'static [&'static str] = &["ABCD", "DCBA", "BADC", "CDAB"];

    /// Parses a spelling (case-insensitive), `None` if unknown.
    pub fn parse(text: &str) -> Option<ByteOrder> {
        let lower = text.trim().to_ascii_lowercase();
        BYTE_ORDER_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, o)| *o)
    }

    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::Abcd => "ABCD",
            ByteOrder::Dcba => "DCBA",
            ByteOrder::Badc => "BADC",
            ByteOrder::Cdab => "CDAB",
        }
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Dcba | ByteOrder::Badc)
    }

    fn swaps_words(self) -> bool {
        matches!(self, ByteOrder::Dcba | ByteOrder::Cdab)
    }

    /// Registers as read from the device → the value's bytes, most significant first.
    pub fn to_bytes(self, words: &[u16]) -> Vec<u8> {
        let mut ordered: Vec<u16> = words.to_vec();
        if self.swaps_words() {
            ordered.reverse();
        }
        ordered
            .into_iter()
            .flat_map(|w| {
                let w = if self.swaps_bytes() {
                    w.swap_bytes()
                } else {
                    w
                };
                w.to_be_bytes()
            })
            .collect()
    }

    /// The value's bytes, most significant first → registers to write. An odd byte count is
    /// padded with a zero byte.
    pub fn to_words(self, bytes: &[u8]) -> Vec<u16> {
        let mut words: Vec<u16> = bytes
            .chunks(2)
            .map(|c| {
                let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
                if self.swaps_bytes() {
                    w.swap_bytes()
                } else {
                    w
                }
            })
            .collect();
        if self.swaps_words() {
            words.reverse();
        }
        words
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything needed to turn a point's raw registers or bits into a value and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub data_type: DataType,
    pub byte_order: ByteOrder,
    /// Registers of a string (ignored for other types).
    pub length: u16,
    /// A single bit (0 = least significant) of a 16-bit register, read as a boolean.
    pub bit: Option<u8>,
    /// `value = raw × scale + offset`; never zero (the configuration refuses it).
    pub scale: f64,
    pub offset: f64,
    /// Round reported numbers to this many decimals.
    pub decimals: Option<u8>,
}

impl Encoding {
    /// A plain encoding of `data_type`: ABCD, no scaling.
    pub fn plain(data_type: DataType) -> Self {
        Encoding {
            data_type,
            byte_order: ByteOrder::Abcd,
            length: 1,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            decimals: None,
        }
    }

    /// Registers the point occupies (1 for a bit of a register).
    pub fn registers(&self) -> u16 {
        if self.bit.is_some() {
            1
        } else {
            self.data_type.registers(self.length)
        }
    }

    fn is_scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }
}

/// Why registers did not give a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the device sent NaN or an infinite number")]
    NotANumber,
    #[error("expected {expected} registers, got {got}")]
    WrongLength { expected: usize, got: usize },
}

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    WrongType(String),
}

/// A coil or discrete input.
pub fn decode_bit(bit: bool) -> Value {
    Value::Bool(bit)
}

/// Registers (exactly [`Encoding::registers`] of them) → the point's value.
pub fn decode(enc: &Encoding, words: &[u16]) -> Result<Value, DecodeError> {
    let expected = usize::from(enc.registers());
    if words.len() != expected {
        return Err(DecodeError::WrongLength {
            expected,
            got: words.len(),
        });
    }
    let bytes = enc.byte_order.to_bytes(words);
    if let Some(bit) = enc.bit {
        let word = u16::from_be_bytes([bytes[0], bytes[1]]);
        return Ok(Value::Bool((word >> bit) & 1 == 1));
    }
    let int = |n: usize| -> u64 {
        bytes[..n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let raw: Raw = match enc.data_type {
        DataType::Bool => return Ok(Value::Bool(bytes.iter().any(|b| *b != 0))),
        DataType::Int16 => Raw::Int(i128::from(int(2) as u16 as i16)),
        DataType::Uint16 => Raw::Int(i128::from(int(2) as u16)),
        DataType::Int32 => Raw::Int(i128::from(int(4) as u32 as i32)),
        DataType::Uint32 => Raw::Int(i128::from(int(4) as u32)),
        DataType::Int64 => Raw::Int(i128::from(int(8) as i64)),
        DataType::Uint64 => Raw::Int(i128::from(int(8))),
        DataType::Float32 => Raw::Float(f64::from(f32::from_bits(int(4) as u32))),
        DataType::Float64 => Raw::Float(f64::from_bits(int(8))),
        DataType::String => return Ok(Value::Text(decode_string(&bytes))),
    };
    let value = match raw {
        Raw::Int(i) if !enc.is_scaled() => match i64::try_from(i) {
            Ok(i) => return Ok(Value::Int(i)),
            // Above i64::MAX (a uint64 only): the nearest float.
            Err(_) => i as f64,
        },
        Raw::Int(i) => i as f64 * enc.scale + enc.offset,
        Raw::Float(f) if !f.is_finite() => return Err(DecodeError::NotANumber),
        Raw::Float(f) => f * enc.scale + enc.offset,
    };
    if !value.is_finite() {
        return Err(DecodeError::NotANumber);
    }
    Ok(Value::Float(round(value, enc.decimals)))
}

enum Raw {
    Int(i128),
    Float(f64),
}

fn round(value: f64, decimals: Option<u8>) -> f64 {
    match decimals {
        Some(d) => {
            let factor = 10f64.powi(i32::from(d.min(15)));
            let r = (value * factor).round() / factor;
            if r.is_finite() {
                r
            } else {
                value
            }
        }
        None => value,
    }
}

/// Text up to the first NUL, trailing spaces removed; bytes that are not UTF-8 become U+FFFD.
fn decode_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end_matches(' ')
        .to_owned()
}

/// A value to write → the registers that hold it (before any read-back).
///
/// Integers: the inverse scale `(value − offset) / scale` must be a whole number (up to float
/// rounding noise) within the data type's range. Floats: finite and within the type's range.
/// Strings: at most `length × 2` bytes (padded with NUL). Booleans: `true`/`false` or 1/0.
pub fn encode(enc: &Encoding, value: &Value) -> Result<Vec<u16>, EncodeError> {
    let order = enc.byte_order;
    if enc.bit.is_some() {
        return Err(EncodeError::WrongType(
            "a single bit is written by read-modify-write, not encoded alone".into(),
        ));
    }
    match enc.data_type {
        DataType::Bool => {
            let on = to_bool(value)?;
            Ok(order.to_words(&[0, u8::from(on)]))
        }
        DataType::String => {
            let Value::Text(text) = value else {
                return Err(EncodeError::WrongType(format!("{value} is not text")));
            };
            let max = usize::from(enc.length) * 2;
            if text.len() > max {
                return Err(EncodeError::OutOfRange(format!(
                    "the text is {} bytes long; this field holds at most {max}",
                    text.len()
                )));
            }
            let mut bytes = text.as_bytes().to_vec();
            bytes.resize(max, 0);
            Ok(order.to_words(&bytes))
        }
        DataType::Float32 | DataType::Float64 => {
            let v = to_f64(value)?;
            let raw = (v - enc.offset) / enc.scale;
            if !raw.is_finite() {
                return Err(EncodeError::OutOfRange(format!(
                    "{v} is not a finite number"
                )));
            }
            if enc.data_type == DataType::Float32 {
                if raw.abs() > f64::from(f32::MAX) {
                    return Err(EncodeError::OutOfRange(format!(
                        "{v} does not fit a float32"
                    )));
                }
                Ok(order.to_words(&(raw as f32).to_bits().to_be_bytes()))
            } else {
                Ok(order.to_words(&raw.to_bits().to_be_bytes()))
            }
        }
        t => {
            // Every other type is an integer type.
            let (min, max) = t.int_range().unwrap_or((0, 0));
            let raw: i128 = match value {
                Value::Int(i) if !enc.is_scaled() => i128::from(*i),
                _ => {
                    let v = to_f64(value)?;
                    let exact = (v - enc.offset) / enc.scale;
                    if !exact.is_finite() {
                        return Err(EncodeError::OutOfRange(format!(
                            "{v} is not a finite number"
                        )));
                    }
                    let rounded = exact.round();
                    // Allow float noise (21.3 / 0.1 = 212.99999999999997), not a real fraction.
                    if (exact - rounded).abs() > 1e-6 * rounded.abs().max(1.0) {
                        return Err(EncodeError::OutOfRange(format!(
                            "{v} is not a multiple of this field's step {}",
                            enc.scale.abs()
                        )));
                    }
                    if rounded < min as f64 || rounded > max as f64 {
                        return Err(out_of_range(enc, v, min, max));
                    }
                    rounded as i128
                }
            };
            if raw < min || raw > max {
                return Err(out_of_range(enc, raw as f64, min, max));
            }
            let bytes = match t {
                DataType::Int16 | DataType::Uint16 => (raw as u16).to_be_bytes().to_vec(),
                DataType::Int32 | DataType::Uint32 => (raw as u32).to_be_bytes().to_vec(),
                _ => (raw as u64).to_be_bytes().to_vec(),
            };
            Ok(order.to_words(&bytes))
        }
    }
}

/// "70000 is out of range: int16 with scale 1 holds -32768 to 32767".
fn out_of_range(enc: &Encoding, v: f64, min: i128, max: i128) -> EncodeError {
    let a = min as f64 * enc.scale + enc.offset;
    let b = max as f64 * enc.scale + enc.offset;
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let scaled = if enc.is_scaled() {
        format!(" (scale {}, offset {})", enc.scale, enc.offset)
    } else {
        String::new()
    };
    EncodeError::OutOfRange(format!(
        "{v} does not fit: this {}{scaled} field holds {lo} to {hi}",
        enc.data_type
    ))
}

/// A bit of a 16-bit register set to `on`: the register's new content, in device order.
pub fn with_bit(enc: &Encoding, current: u16, on: bool) -> u16 {
    let bit = enc.bit.unwrap_or(0).min(15);
    let bytes = enc.byte_order.to_bytes(&[current]);
    let word = u16::from_be_bytes([bytes[0], bytes[1]]);
    let word = if on {
        word | (1 << bit)
    } else {
        word & !(1 << bit)
    };
    enc.byte_order.to_words(&word.to_be_bytes())[0]
}

/// A value as a coil state: booleans, or the numbers 0 and 1.
pub fn to_bool(value: &Value) -> Result<bool, EncodeError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Float(f) if *f == 0.0 => Ok(false),
        Value::Float(f) if *f == 1.0 => Ok(true),
        Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "1" | "yes" => Ok(true),
            "false" | "off" | "0" | "no" => Ok(false),
            _ => Err(EncodeError::WrongType(format!("{t:?} is not a boolean"))),
        },
        other => Err(EncodeError::WrongType(format!(
            "{other} is not a boolean (use true/false or 1/0)"
        ))),
    }
}

fn to_f64(value: &Value) -> Result<f64, EncodeError> {
    let v = match value {
        Value::Text(t) => t
            .trim()
            .parse::<f64>()
            .map_err(|_| EncodeError::WrongType(format!("{t:?} is not a number")))?,
        other => other
            .as_f64()
            .ok_or_else(|| EncodeError::WrongType(format!("{other} is not a number")))?,
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EncodeError::OutOfRange(format!(
            "{v} is not a finite number"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: DataType, order: ByteOrder) -> Encoding {
        Encoding {
            byte_order: order,
            ..Encoding::plain(t)
        }
    }

    fn scaled(t: DataType, scale: f64, offset: f64) -> Encoding {
        Encoding {
            scale,
            offset,
            ..Encoding::plain(t)
        }
    }

    #[test]
    fn names_and_aliases() {
        for (text, t) in [
            ("FLOAT32-IEEE", DataType::Float32),
            ("float64-ieee", DataType::Float64),
            ("Int16", DataType::Int16),
            ("UINT64", DataType::Uint64),
            ("BIT", DataType::Bool),
            ("bool", DataType::Bool),
            ("STRING", DataType::String),
            ("double", DataType::Float64),
        ] {
            assert_eq!(DataType::parse(text), Some(t), "{text}");
        }
        assert_eq!(DataType::parse("float16"), None);
        assert_eq!(DataType::parse("int8"), None);
        for (text, o) in [
            ("abcd", ByteOrder::Abcd),
            ("none", ByteOrder::Abcd),
            ("ABCDEFGH", ByteOrder::Abcd),
            ("word_byte", ByteOrder::Dcba),
            ("HGFEDCBA", ByteOrder::Dcba),
            ("byte", ByteOrder::Badc),
            ("BADCFEHG", ByteOrder::Badc),
            ("word", ByteOrder::Cdab),
            ("GHEFCDAB", ByteOrder::Cdab),
            ("CDAB", ByteOrder::Cdab),
        ] {
            assert_eq!(ByteOrder::parse(text), Some(o), "{text}");
        }
        assert_eq!(ByteOrder::parse("ACBD"), None);
        for name in DataType::NAMES {
            assert_eq!(DataType::parse(name).map(DataType::name), Some(*name));
        }
    }

    #[test]
    fn byte_orders_of_a_32_bit_value() {
        // 0x11223344 as the four orders put it on the wire.
        let cases = [
            (ByteOrder::Abcd, [0x1122, 0x3344]),
            (ByteOrder::Dcba, [0x4433, 0x2211]),
            (ByteOrder::Badc, [0x2211, 0x4433]),
            (ByteOrder::Cdab, [0x3344, 0x1122]),
        ];
        for (order, words) in cases {
            assert_eq!(order.to_bytes(&words), [0x11, 0x22, 0x33, 0x44], "{order}");
            assert_eq!(order.to_words(&[0x11, 0x22, 0x33, 0x44]), words, "{order}");
            assert_eq!(
                decode(&enc(DataType::Uint32, order), &words),
                Ok(Value::Int(0x1122_3344))
            );
            assert_eq!(
                encode(&enc(DataType::Uint32, order), &Value::Int(0x1122_3344)).unwrap(),
                words
            );
        }
    }

    #[test]
    fn byte_orders_of_a_64_bit_value() {
        let v = 0x0102_0304_0506_0708_i64;
        let cases = [
            (ByteOrder::Abcd, [0x0102, 0x0304, 0x0506, 0x0708]), // ABCDEFGH
            (ByteOrder::Dcba, [0x0807, 0x0605, 0x0403, 0x0201]), // HGFEDCBA
            (ByteOrder::Badc, [0x0201, 0x0403, 0x0605, 0x0807]), // BADCFEHG
            (ByteOrder::Cdab, [0x0708, 0x0506, 0x0304, 0x0102]), // GHEFCDAB
        ];
        for (order, words) in cases {
            assert_eq!(
                decode(&enc(DataType::Int64, order), &words),
                Ok(Value::Int(v)),
                "{order}"
            );
            assert_eq!(
                encode(&enc(DataType::Int64, order), &Value::Int(v)).unwrap(),
                words
            );
        }
    }

    #[test]
    fn sixteen_bit_orders_swap_bytes_only() {
        let e = |o| enc(DataType::Int16, o);
        assert_eq!(decode(&e(ByteOrder::Abcd), &[0xFF85]), Ok(Value::Int(-123)));
        assert_eq!(decode(&e(ByteOrder::Cdab), &[0xFF85]), Ok(Value::Int(-123)));
        assert_eq!(decode(&e(ByteOrder::Dcba), &[0x85FF]), Ok(Value::Int(-123)));
        assert_eq!(decode(&e(ByteOrder::Badc), &[0x85FF]), Ok(Value::Int(-123)));
        assert_eq!(
            encode(&e(ByteOrder::Badc), &Value::Int(-123)).unwrap(),
            [0x85FF]
        );
    }

    #[test]
    fn integer_limits() {
        let d = |t, w: &[u16]| decode(&enc(t, ByteOrder::Abcd), w);
        assert_eq!(d(DataType::Int16, &[0x8000]), Ok(Value::Int(-32768)));
        assert_eq!(d(DataType::Int16, &[0x7FFF]), Ok(Value::Int(32767)));
        assert_eq!(d(DataType::Uint16, &[0xFFFF]), Ok(Value::Int(65535)));
        assert_eq!(
            d(DataType::Int32, &[0x8000, 0]),
            Ok(Value::Int(i32::MIN.into()))
        );
        assert_eq!(
            d(DataType::Uint32, &[0xFFFF, 0xFFFF]),
            Ok(Value::Int(u32::MAX.into()))
        );
        assert_eq!(
            d(DataType::Int64, &[0x8000, 0, 0, 0]),
            Ok(Value::Int(i64::MIN))
        );
        assert_eq!(
            d(DataType::Int64, &[0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Ok(Value::Int(i64::MAX))
        );
        // Above i64::MAX a uint64 becomes the nearest float.
        assert_eq!(
            d(DataType::Uint64, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Ok(Value::Float(u64::MAX as f64))
        );
        assert_eq!(
            d(DataType::Uint64, &[0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Ok(Value::Int(i64::MAX))
        );

        let e = |t, v| encode(&enc(t, ByteOrder::Abcd), &Value::Int(v));
        assert_eq!(e(DataType::Int16, -32768).unwrap(), [0x8000]);
        assert_eq!(e(DataType::Int16, 32767).unwrap(), [0x7FFF]);
        assert_eq!(e(DataType::Uint16, 65535).unwrap(), [0xFFFF]);
        assert_eq!(
            e(DataType::Uint32, u32::MAX.into()).unwrap(),
            [0xFFFF, 0xFFFF]
        );
        assert_eq!(e(DataType::Int64, i64::MIN).unwrap(), [0x8000, 0, 0, 0]);
        for (t, v) in [
            (DataType::Int16, 32768),
            (DataType::Int16, -32769),
            (DataType::Uint16, 65536),
            (DataType::Uint16, -1),
            (DataType::Int32, i64::from(i32::MAX) + 1),
            (DataType::Uint32, -1),
            (DataType::Uint64, -1),
        ] {
            let err = e(t, v).unwrap_err();
            assert!(
                matches!(&err, EncodeError::OutOfRange(m) if m.contains("does not fit")),
                "{t} {v}: {err:?}"
            );
        }
        // Refused, never wrapped: the message names the range.
        assert_eq!(
            e(DataType::Int16, 70000).unwrap_err().to_string(),
            "70000 does not fit: this int16 field holds -32768 to 32767"
        );
        // A float that is a whole number is fine for an integer register; a fraction is not.
        let i16e = enc(DataType::Int16, ByteOrder::Abcd);
        assert_eq!(encode(&i16e, &Value::Float(-5.0)).unwrap(), [0xFFFB]);
        assert!(encode(&i16e, &Value::Float(1.5)).is_err());
        assert!(encode(&i16e, &Value::Text("12".into())).is_ok());
        assert!(encode(&i16e, &Value::Text("twelve".into())).is_err());
    }

    #[test]
    fn floats_and_nan() {
        let f32e = |o| enc(DataType::Float32, o);
        // 21.5f32 = 0x41AC0000
        assert_eq!(
            decode(&f32e(ByteOrder::Abcd), &[0x41AC, 0x0000]),
            Ok(Value::Float(21.5))
        );
        assert_eq!(
            decode(&f32e(ByteOrder::Cdab), &[0x0000, 0x41AC]),
            Ok(Value::Float(21.5))
        );
        assert_eq!(
            encode(&f32e(ByteOrder::Cdab), &Value::Float(-1.25)).unwrap(),
            [0x0000, 0xBFA0]
        );
        // NaN and infinities are not values.
        assert_eq!(
            decode(&f32e(ByteOrder::Abcd), &[0x7FC0, 0x0000]),
            Err(DecodeError::NotANumber)
        );
        assert_eq!(
            decode(&f32e(ByteOrder::Abcd), &[0xFF80, 0x0000]),
            Err(DecodeError::NotANumber)
        );
        let f64e = enc(DataType::Float64, ByteOrder::Abcd);
        let nan = f64::NAN.to_bits().to_be_bytes();
        assert_eq!(
            decode(&f64e, &ByteOrder::Abcd.to_words(&nan)),
            Err(DecodeError::NotANumber)
        );
        assert_eq!(
            decode(
                &f64e,
                &ByteOrder::Abcd.to_words(&f64::MIN.to_bits().to_be_bytes())
            ),
            Ok(Value::Float(f64::MIN))
        );
        assert!(encode(&f64e, &Value::Float(f64::NAN)).is_err());
        assert!(encode(&f64e, &Value::Float(f64::INFINITY)).is_err());
        assert!(encode(&f32e(ByteOrder::Abcd), &Value::Float(1e39)).is_err());
        assert!(encode(&f32e(ByteOrder::Abcd), &Value::Float(f64::from(f32::MAX))).is_ok());
        // A huge scale can overflow a finite raw value into infinity: not a value either.
        let big = scaled(DataType::Float32, 1e300, 0.0);
        assert_eq!(
            decode(&big, &[0x7F7F, 0xFFFF]),
            Err(DecodeError::NotANumber)
        );
    }

    #[test]
    fn scale_and_offset_and_their_inverse() {
        let tenth = scaled(DataType::Int16, 0.1, 0.0);
        assert_eq!(decode(&tenth, &[215]), Ok(Value::Float(21.5)));
        assert_eq!(encode(&tenth, &Value::Float(21.5)).unwrap(), [215]);
        // Float noise is not a fraction: 21.3 / 0.1 = 212.99999999999997.
        assert_eq!(encode(&tenth, &Value::Float(21.3)).unwrap(), [213]);
        let err = encode(&tenth, &Value::Float(21.35)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "21.35 is not a multiple of this field's step 0.1"
        );
        // The range is given in the field's units.
        let err = encode(&tenth, &Value::Float(4000.0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "4000 does not fit: this int16 (scale 0.1, offset 0) field holds -3276.8 to 3276.7000000000003"
        );

        let temp = scaled(DataType::Uint16, 0.5, -40.0);
        assert_eq!(decode(&temp, &[0]), Ok(Value::Float(-40.0)));
        assert_eq!(decode(&temp, &[100]), Ok(Value::Float(10.0)));
        assert_eq!(encode(&temp, &Value::Float(10.0)).unwrap(), [100]);
        assert!(encode(&temp, &Value::Float(-40.5)).is_err(), "below raw 0");

        // Negative scale: the range flips, the inverse still works.
        let neg = scaled(DataType::Int16, -2.0, 1.0);
        assert_eq!(decode(&neg, &[3]), Ok(Value::Float(-5.0)));
        assert_eq!(encode(&neg, &Value::Float(-5.0)).unwrap(), [3]);
        assert_eq!(encode(&neg, &Value::Int(7)).unwrap(), [0xFFFD]);
        let err = encode(&neg, &Value::Float(100001.0)).unwrap_err();
        assert!(err.to_string().contains("holds -65533 to 65537"), "{err}");

        let fscaled = scaled(DataType::Float32, 10.0, 5.0);
        assert_eq!(decode(&fscaled, &[0x3F80, 0]), Ok(Value::Float(15.0)));
        assert_eq!(encode(&fscaled, &Value::Float(15.0)).unwrap(), [0x3F80, 0]);
        // An unscaled integer stays an integer; a scaled one becomes a number.
        let plain = Encoding::plain(DataType::Uint32);
        assert_eq!(decode(&plain, &[0, 7]), Ok(Value::Int(7)));
        let offset = scaled(DataType::Uint32, 1.0, 0.5);
        assert_eq!(decode(&offset, &[0, 7]), Ok(Value::Float(7.5)));
    }

    #[test]
    fn decimals_round_for_display() {
        let mut e = scaled(DataType::Float32, 1.0, 0.0);
        e.decimals = Some(2);
        // 21.456f32
        let words = ByteOrder::Abcd.to_words(&21.456f32.to_bits().to_be_bytes());
        assert_eq!(decode(&e, &words), Ok(Value::Float(21.46)));
        e.decimals = Some(0);
        assert_eq!(decode(&e, &words), Ok(Value::Float(21.0)));
        e.decimals = Some(255);
        assert!(matches!(decode(&e, &words), Ok(Value::Float(_))));
    }

    #[test]
    fn bits_of_a_register() {
        let mut e = Encoding::plain(DataType::Bool);
        e.bit = Some(0);
        assert_eq!(decode(&e, &[0x0001]), Ok(Value::Bool(true)));
        e.bit = Some(15);
        assert_eq!(decode(&e, &[0x8000]), Ok(Value::Bool(true)));
        assert_eq!(decode(&e, &[0x7FFF]), Ok(Value::Bool(false)));
        assert_eq!(with_bit(&e, 0x0001, true), 0x8001);
        assert_eq!(with_bit(&e, 0xFFFF, false), 0x7FFF);
        // With swapped bytes, bit 0 is the low bit of the value, in the register's high byte.
        e.byte_order = ByteOrder::Badc;
        e.bit = Some(0);
        assert_eq!(decode(&e, &[0x0100]), Ok(Value::Bool(true)));
        assert_eq!(with_bit(&e, 0x0000, true), 0x0100);
        assert!(encode(&e, &Value::Bool(true)).is_err());
        // A bool of a whole register: any bit set.
        let b = Encoding::plain(DataType::Bool);
        assert_eq!(decode(&b, &[0x0400]), Ok(Value::Bool(true)));
        assert_eq!(decode(&b, &[0]), Ok(Value::Bool(false)));
        assert_eq!(encode(&b, &Value::Bool(true)).unwrap(), [1]);
        assert_eq!(encode(&b, &Value::Int(0)).unwrap(), [0]);
        assert!(encode(&b, &Value::Int(2)).is_err());
        assert_eq!(decode_bit(true), Value::Bool(true));
        assert_eq!(to_bool(&Value::Text("on".into())), Ok(true));
        assert!(to_bool(&Value::Text("maybe".into())).is_err());
    }

    #[test]
    fn strings() {
        let mut e = Encoding::plain(DataType::String);
        e.length = 4;
        let words = [0x4845, 0x4C4C, 0x4F00, 0x0000]; // "HELLO"
        assert_eq!(decode(&e, &words), Ok(Value::Text("HELLO".into())));
        assert_eq!(encode(&e, &Value::Text("HELLO".into())).unwrap(), words);
        e.byte_order = ByteOrder::Badc;
        assert_eq!(
            decode(&e, &[0x4548, 0x4C4C, 0x004F, 0]),
            Ok(Value::Text("HELLO".into()))
        );
        // Trailing spaces go; bad UTF-8 is replaced, never a panic.
        e.byte_order = ByteOrder::Abcd;
        assert_eq!(
            decode(&e, &[0x4142, 0x2020, 0x2020, 0x2020]),
            Ok(Value::Text("AB".into()))
        );
        assert_eq!(
            decode(&e, &[0xFF41, 0, 0, 0]),
            Ok(Value::Text("\u{FFFD}A".into()))
        );
        assert!(encode(&e, &Value::Text("123456789".into())).is_err());
        assert!(encode(&e, &Value::Int(1)).is_err());
        assert_eq!(
            decode(&e, &[0x4142]),
            Err(DecodeError::WrongLength {
                expected: 4,
                got: 1
            })
        );
    }
}
