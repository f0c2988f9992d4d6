//! The body of the `modbus_decode` fuzz target in `fuzz/`, kept in the crate so that the normal
//! test suite runs it too: on the seed corpus and on mutations of it.
//!
//! Input: byte 0 picks the encoding (bits 0-3: data type; bits 4-5: byte order; bit 6: scaled;
//! bit 7: two decimals), byte 1 the string length (bits 4-6) or a bit of the register (bit 7
//! set, bits 0-3); the rest is registers (big-endian pairs), decoded and written back, and as
//! text to write. It asserts what must hold for any input; a panic is a bug.

use gateway_api::Value;

use crate::codec::{self, ByteOrder, DataType, DecodeError, Encoding};

const TYPES: [DataType; 10] = [
    DataType::Bool,
    DataType::Int16,
    DataType::Uint16,
    DataType::Int32,
    DataType::Uint32,
    DataType::Int64,
    DataType::Uint64,
    DataType::Float32,
    DataType::Float64,
    DataType::String,
];

const ORDERS: [ByteOrder; 4] = [
    ByteOrder::Abcd,
    ByteOrder::Dcba,
    ByteOrder::Badc,
    ByteOrder::Cdab,
];

/// Target `modbus_decode`.
pub fn modbus_decode(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let scaled = a & 0x40 != 0;
    let enc = Encoding {
        data_type: TYPES[usize::from(a & 0x0f) % TYPES.len()],
        byte_order: ORDERS[usize::from((a >> 4) & 3)],
        length: 1 + u16::from((b >> 4) & 7),
        bit: (b & 0x80 != 0).then_some(b & 0x0f),
        scale: if scaled { 0.1 } else { 1.0 },
        offset: if scaled { -40.0 } else { 0.0 },
        decimals: (a & 0x80 != 0).then_some(2),
    };
    let words: Vec<u16> = rest
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let n = usize::from(enc.registers());
    match codec::decode(&enc, &words) {
        Err(DecodeError::WrongLength { expected, got }) => {
            assert_eq!((expected, got), (n, words.len()));
        }
        Err(DecodeError::NotANumber) => {
            assert_eq!(words.len(), n);
            assert!(matches!(enc.data_type, DataType::Float32 | DataType::Float64) || scaled);
        }
        Ok(v) => {
            assert_eq!(words.len(), n);
            written_back(&enc, &words, &v);
        }
    }
    // Whatever prefix has the right length decodes without a panic too.
    if words.len() > n {
        let _ = codec::decode(&enc, &words[..n]);
    }
    // Arbitrary text and numbers as values to write: refused or encoded, never a panic.
    let text = String::from_utf8_lossy(rest);
    for value in [
        Value::Text(text.into_owned()),
        Value::Float(f64::from_bits(
            rest.iter()
                .take(8)
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )),
        Value::Int(i64::from_be_bytes(std::array::from_fn(|i| {
            rest.get(i).copied().unwrap_or(0)
        }))),
    ] {
        if let Ok(w) = codec::encode(&enc, &value) {
            assert_eq!(w.len(), n, "{value:?} as {enc:?}");
        }
        let _ = codec::to_bool(&value);
    }
}

/// A decoded value written back gives the registers it came from (integers) or the same value
/// (floats), where the encoding is lossless (no scale, no rounding, a whole register per value).
fn written_back(enc: &Encoding, words: &[u16], v: &Value) {
    if let Some(bit) = enc.bit {
        let Value::Bool(on) = v else {
            panic!("a bit decoded as {v:?}");
        };
        for want in [!on, *on] {
            let w = codec::with_bit(enc, words[0], want);
            assert_eq!(codec::decode(enc, &[w]), Ok(Value::Bool(want)), "bit {bit}");
        }
        return;
    }
    let lossless = enc.scale == 1.0 && enc.offset == 0.0 && enc.decimals.is_none();
    match (enc.data_type, v) {
        (DataType::String, Value::Text(s)) => {
            if let Ok(w) = codec::encode(enc, v) {
                assert_eq!(codec::decode(enc, &w), Ok(Value::Text(s.clone())));
            }
        }
        (DataType::Bool, Value::Bool(_)) => {}
        (
            DataType::Int16
            | DataType::Uint16
            | DataType::Int32
            | DataType::Uint32
            | DataType::Int64
            | DataType::Uint64,
            Value::Int(_),
        ) if lossless => {
            assert_eq!(
                codec::encode(enc, v).as_deref(),
                Ok(words),
                "{v:?} as {enc:?}"
            );
        }
        // The same number, not always the same bits: -0 is read as 0.
        (DataType::Float32 | DataType::Float64, Value::Float(_)) if lossless => {
            let w = codec::encode(enc, v).expect("a float read is a float to write");
            assert_eq!(codec::decode(enc, &w).as_ref(), Ok(v), "{enc:?}");
        }
        (_, Value::Float(f)) => assert!(f.is_finite()),
        (DataType::String | DataType::Bool, _) => panic!("{v:?} for {enc:?}"),
        _ => assert!(
            !lossless || enc.data_type == DataType::Uint64,
            "{v:?} for {enc:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gateway_api::fuzzing::Mutator;

    #[test]
    fn every_seed_and_mutations_pass() {
        Mutator::new(0x6a09_e667_f3bc_c908).run(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            "modbus_decode",
            b"\0\xff\x7f\x80",
            5000,
            super::modbus_decode,
        );
    }

    /// The encodings the target builds from its first two bytes.
    #[test]
    fn every_data_type_and_order_is_reachable() {
        for a in 0..=255u8 {
            for b in [0u8, 0x70, 0x8f] {
                let mut input = vec![a, b];
                input.extend_from_slice(&[0x41, 0x20, 0, 0, 0x3f, 0x80, 0, 0]);
                super::modbus_decode(&input);
            }
        }
    }
}
