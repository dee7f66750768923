//! TD attributes: the 64-bit TDX policy word of a trust domain.

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Named TD attribute bits (Intel TDX module ABI spec; names as in Linux
/// `arch/x86/include/asm/shared/tdx.h`, SERVTD_EXT as in dcap-qvl).
pub const TD_ATTRIBUTE_NAMES: [(u32, &str); 13] = [
    (0, "DEBUG"),
    (4, "HGS_PLUS_PROF"),
    (5, "PERF_PROF"),
    (6, "PMT_PROF"),
    (16, "ICSSD"),
    (17, "SERVTD_EXT"),
    (27, "LASS"),
    (28, "SEPT_VE_DISABLE"),
    (29, "MIGRATABLE"),
    (30, "PKS"),
    (31, "KL"),
    (62, "TPA"),
    (63, "PERFMON"),
];

const DEBUG_BIT: u32 = 0;
/// HGS_PLUS_PROF, PERF_PROF, PMT_PROF: the host may profile the TD.
const PROFILING_MASK: u64 = 0b111 << 4;
const SEPT_VE_DISABLE_BIT: u32 = 28;
const MIGRATABLE_BIT: u32 = 29;

/// TD attributes as stored in the quote (8 bytes, little-endian).
/// Production TDs show 0x0000000010000000 (SEPT_VE_DISABLE only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TdAttributes(pub [u8; 8]);

impl TdAttributes {
    /// The attributes as a number.
    pub fn value(&self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// Whether bit `bit` (0..64) is set; false for bits past 63.
    pub fn is_set(&self, bit: u32) -> bool {
        self.value().checked_shr(bit).is_some_and(|v| v & 1 == 1)
    }

    /// DEBUG: the host can read and change the TD's state and memory.
    pub fn debug(&self) -> bool {
        self.is_set(DEBUG_BIT)
    }

    /// Any profiling bit (4-6): the host can observe the TD's execution.
    pub fn profiling(&self) -> bool {
        self.value() & PROFILING_MASK != 0
    }

    /// SEPT_VE_DISABLE: EPT violations on pending pages do not become #VE.
    pub fn sept_ve_disable(&self) -> bool {
        self.is_set(SEPT_VE_DISABLE_BIT)
    }

    /// MIGRATABLE: the TD may be migrated by a migration TD.
    pub fn migratable(&self) -> bool {
        self.is_set(MIGRATABLE_BIT)
    }

    /// Names of the set bits, lowest first; bits without a name appear as
    /// `BIT<n>` so nothing set goes unreported.
    pub fn flag_names(&self) -> Vec<String> {
        (0..64)
            .filter(|&bit| self.is_set(bit))
            .map(
                |bit| match TD_ATTRIBUTE_NAMES.iter().find(|(b, _)| *b == bit) {
                    Some((_, name)) => (*name).to_string(),
                    None => format!("BIT{bit}"),
                },
            )
            .collect()
    }
}

impl std::fmt::Display for TdAttributes {
    /// `0x0000000010000000 [SEPT_VE_DISABLE]`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "0x{:016x} [{}]",
            self.value(),
            self.flag_names().join(", ")
        )
    }
}

/// JSON: `{"bytes": "<hex as stored>", "value": "0x<u64>", "flags": [names]}`.
impl Serialize for TdAttributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TdAttributes", 3)?;
        st.serialize_field("bytes", &hex::encode(self.0))?;
        st.serialize_field("value", &format!("0x{:016x}", self.value()))?;
        st.serialize_field("flags", &self.flag_names())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(value: u64) -> TdAttributes {
        TdAttributes(value.to_le_bytes())
    }

    #[test]
    fn production_value_is_sept_ve_disable_only() {
        let a = TdAttributes([0, 0, 0, 0x10, 0, 0, 0, 0]);
        assert_eq!(a.value(), 0x1000_0000);
        assert!(a.sept_ve_disable() && !a.debug() && !a.profiling() && !a.migratable());
        assert_eq!(a.flag_names(), ["SEPT_VE_DISABLE"]);
        assert_eq!(a.to_string(), "0x0000000010000000 [SEPT_VE_DISABLE]");
    }

    #[test]
    fn each_named_bit_decodes_to_its_name() {
        for (bit, name) in TD_ATTRIBUTE_NAMES {
            assert_eq!(attrs(1 << bit).flag_names(), [name], "bit {bit}");
        }
        assert!(attrs(1).debug());
        for bit in 4..=6 {
            assert!(attrs(1 << bit).profiling(), "bit {bit}");
        }
        assert!(!attrs(1 << 7).profiling());
        assert!(attrs(1 << 29).migratable());
    }

    #[test]
    fn unnamed_bits_are_still_reported() {
        assert_eq!(attrs((1 << 1) | (1 << 40)).flag_names(), ["BIT1", "BIT40"]);
        assert!(!attrs(u64::MAX).is_set(64));
    }

    #[test]
    fn json_has_bytes_value_and_flags() {
        let json = serde_json::to_value(attrs(0x1000_0001)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "bytes": "0100001000000000",
                "value": "0x0000000010000001",
                "flags": ["DEBUG", "SEPT_VE_DISABLE"]
            })
        );
    }
}
