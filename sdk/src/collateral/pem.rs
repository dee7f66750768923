//! Minimal PEM decoding for the chains and CRLs Intel's services return.
//!
//! Text between blocks is ignored, as in dcap-qvl: PCK chains taken from a
//! quote's certification data often end in a NUL byte.

use base64::Engine as _;

/// Decode every `-----BEGIN {label}-----` block in `text`, in order.
///
/// The error names the 0-based block index and the problem.
pub(crate) fn decode_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some((_, after_begin)) = rest.split_once(begin.as_str()) {
        let index = blocks.len();
        let (body, after_end) = after_begin
            .split_once(end.as_str())
            .ok_or_else(|| format!("PEM block {index} has no `{end}` line"))?;
        let base64_text: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64_text)
            .map_err(|e| format!("PEM block {index} is not valid base64: {e}"))?;
        blocks.push(der);
        rest = after_end;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::decode_blocks;

    #[test]
    fn decodes_blocks_in_order_and_ignores_text_between_them() {
        let text = "junk\n-----BEGIN X-----\nAAEC\n-----END X-----\n\n-----BEGIN X-----\nAw==\n-----END X-----\n\0";
        assert_eq!(
            decode_blocks(text, "X").unwrap(),
            vec![vec![0u8, 1, 2], vec![3u8]]
        );
    }

    #[test]
    fn names_the_block_that_is_broken() {
        let text =
            "-----BEGIN X-----\nAAEC\n-----END X-----\n-----BEGIN X-----\n!!\n-----END X-----";
        let error = decode_blocks(text, "X").unwrap_err();
        assert!(
            error.starts_with("PEM block 1 is not valid base64"),
            "{error}"
        );
        let error = decode_blocks("-----BEGIN X-----\nAAEC\n", "X").unwrap_err();
        assert_eq!(error, "PEM block 0 has no `-----END X-----` line");
    }
}
