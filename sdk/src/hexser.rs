//! Serde helpers: byte strings as lower-case hex in JSON.
//!
//! Use with `#[serde(with = "crate::hexser")]` on `[u8; N]` fields, or
//! `#[serde(with = "crate::hexser::vec")]` on `Vec<u8>`. Parsing accepts upper
//! or lower case and rejects a wrong length with a message naming both lengths.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Serialize a fixed-size byte array as hex.
pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Deserialize a fixed-size byte array from hex of exactly `2 * N` digits.
pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    decode_array(&text).map_err(D::Error::custom)
}

/// Decode hex into a fixed-size array, naming the problem on failure.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("invalid hex: {e}"))?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes ({} hex digits), got {len} bytes", 2 * N))
}

/// Hex serde for `Vec<u8>`.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.trim()).map_err(|e| D::Error::custom(format!("invalid hex: {e}")))
    }
}

/// Hex serde for `Vec<[u8; N]>` (lists of measurements).
pub mod list {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer, const N: usize>(
        items: &[[u8; N]],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Vec<[u8; N]>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| decode_array(t).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "crate::hexser")]
        a: [u8; 4],
        #[serde(with = "crate::hexser::vec")]
        b: Vec<u8>,
    }

    #[test]
    fn round_trip_and_length_errors() {
        let t = T {
            a: [1, 2, 3, 0xff],
            b: vec![0xab],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"a":"010203ff","b":"ab"}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        let err = serde_json::from_str::<T>(r#"{"a":"0102","b":""}"#).unwrap_err();
        assert!(err.to_string().contains("expected 4 bytes"), "{err}");
        let err = serde_json::from_str::<T>(r#"{"a":"zz010203","b":""}"#).unwrap_err();
        assert!(err.to_string().contains("invalid hex"), "{err}");
    }
}
