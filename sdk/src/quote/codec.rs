//! Bounds-checked reading of little-endian fields, and fixed-size writing.
//!
//! Every read names the field it is for, so a short or inconsistent quote
//! produces an error that says which field, where, and by how much.

use super::QuoteError;

/// A cursor over the quote or over one length-delimited section of it.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Absolute offset of `bytes[0]` in the quote, for error messages.
    base: usize,
    /// `None` for the quote itself; otherwise the name of the section, whose
    /// length came from a length field (so running out is a length mismatch,
    /// not a truncated quote).
    section: Option<&'static str>,
}

impl<'a> Reader<'a> {
    /// A reader over a whole quote.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            base: 0,
            section: None,
        }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// The bytes not yet read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let rest = self.rest();
        match rest.get(..len) {
            Some(bytes) => {
                self.pos = self.pos.saturating_add(len);
                Ok(bytes)
            }
            None => Err(self.short(field, len, rest.len())),
        }
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], QuoteError> {
        let available = self.rest().len();
        let bytes = self.take(N, field)?;
        bytes
            .try_into()
            .map_err(|_| self.short(field, N, available))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, QuoteError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// The next `len` bytes as a nested section named `section`.
    pub(crate) fn section(
        &mut self,
        len: u32,
        field: &'static str,
        section: &'static str,
    ) -> Result<Reader<'a>, QuoteError> {
        let base = self.offset();
        // A length that does not fit usize cannot fit the input either.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes = self.take(len, field)?;
        Ok(Reader {
            bytes,
            pos: 0,
            base,
            section: Some(section),
        })
    }

    /// Require that a section's fields used exactly its declared length.
    pub(crate) fn finish(self) -> Result<(), QuoteError> {
        match self.section {
            Some(section) if self.pos != self.bytes.len() => {
                Err(QuoteError::SignatureDataUnderrun {
                    section,
                    offset: self.base,
                    declared: self.bytes.len(),
                    used: self.pos,
                })
            }
            _ => Ok(()),
        }
    }

    fn short(&self, field: &'static str, needed: usize, available: usize) -> QuoteError {
        let offset = self.offset();
        match self.section {
            None => QuoteError::Truncated {
                field,
                offset,
                needed,
                available,
            },
            Some(section) => QuoteError::SignatureDataOverrun {
                section,
                field,
                offset,
                needed,
                available,
            },
        }
    }
}

/// Concatenate `parts` into an `N`-byte array. Callers pass field lists whose
/// lengths sum to `N` (checked by the round-trip tests and, in debug builds,
/// here); nothing here depends on input data.
pub(crate) fn concat<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut dst = out.iter_mut();
    let mut written = 0usize;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        if let Some(slot) = dst.next() {
            *slot = *byte;
            written += 1;
        }
    }
    debug_assert_eq!(
        parts.iter().map(|p| p.len()).sum::<usize>(),
        N,
        "field lengths must sum to the structure size"
    );
    debug_assert_eq!(written, N);
    out
}

/// A length that construction (parse or [`super::QuoteBuilder`]) has already
/// bounded by [`super::MAX_QUOTE_LEN`], as a u32 length prefix.
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_top_level_read_is_truncation_with_field_and_offset() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0201);
        let err = r.u32("b").unwrap_err();
        assert_eq!(
            err,
            QuoteError::Truncated {
                field: "b",
                offset: 2,
                needed: 4,
                available: 1
            }
        );
    }

    #[test]
    fn section_overrun_and_underrun_are_length_mismatches() {
        let data = [0u8, 0, 9, 9, 9];
        let mut r = Reader::new(&data);
        r.take(2, "pad").unwrap();
        let mut s = r.section(3, "sec", "test section").unwrap();
        assert_eq!(s.offset(), 2);
        let err = s.u32("x").unwrap_err();
        assert_eq!(
            err,
            QuoteError::SignatureDataOverrun {
                section: "test section",
                field: "x",
                offset: 2,
                needed: 4,
                available: 3
            }
        );
        let mut s = Reader::new(&data)
            .section(4, "sec", "test section")
            .unwrap();
        s.u16("y").unwrap();
        assert_eq!(
            s.finish().unwrap_err(),
            QuoteError::SignatureDataUnderrun {
                section: "test section",
                offset: 0,
                declared: 4,
                used: 2
            }
        );
    }

    #[test]
    fn section_longer_than_input_is_truncation() {
        let mut r = Reader::new(&[0u8; 3]);
        let err = r.section(u32::MAX, "len", "s").err().unwrap();
        assert!(matches!(
            err,
            QuoteError::Truncated {
                field: "len",
                offset: 0,
                available: 3,
                ..
            }
        ));
    }

    #[test]
    fn concat_places_parts_in_order() {
        let out: [u8; 5] = concat(&[&[1, 2], &[], &[3, 4, 5]]);
        assert_eq!(out, [1, 2, 3, 4, 5]);
    }
}
