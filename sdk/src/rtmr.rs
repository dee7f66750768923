//! RTMR arithmetic: the TDX extend operation and its replay.
//!
//! `RTMR_new = SHA-384(RTMR_old || digest)`, starting from 48 zero bytes
//! (Intel TDX module spec, TDG.MR.RTMR.EXTEND). Every component that computes
//! or checks a runtime measurement register uses these functions.

use sha2::{Digest, Sha384};

/// A SHA-384 measurement register value or digest.
pub type Measurement = [u8; 48];

/// The value of every RTMR after reset.
pub const RTMR_RESET: Measurement = [0u8; 48];

/// Extend `register` with `digest`, returning the new register value.
pub fn extend(register: &Measurement, digest: &Measurement) -> Measurement {
    let mut h = Sha384::new();
    h.update(register);
    h.update(digest);
    h.finalize().into()
}

/// Replay a sequence of digests from reset.
pub fn replay<'a>(digests: impl IntoIterator<Item = &'a Measurement>) -> Measurement {
    digests
        .into_iter()
        .fold(RTMR_RESET, |reg, d| extend(&reg, d))
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> Measurement {
    Sha384::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check value from notes/tdx-facts.md: SHA-384("abc") extended into a zero register.
    #[test]
    fn extend_check_value() {
        let reg = extend(&RTMR_RESET, &sha384(b"abc"));
        assert_eq!(
            hex::encode(reg),
            "93732e3733514a841c982cfa75ea76ab55fe011acb9cd980ef4523913c65be1b0998e04d77f8c174f81a82151619ca40"
        );
        assert_eq!(replay([&sha384(b"abc")]), reg);
    }

    #[test]
    fn replay_is_order_sensitive() {
        let (a, b) = (sha384(b"a"), sha384(b"b"));
        assert_ne!(replay([&a, &b]), replay([&b, &a]));
        assert_eq!(replay([]), RTMR_RESET);
    }
}
