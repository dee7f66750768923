//! The window in which a collateral bundle is current, read from the dates
//! inside its parts.

use std::fmt;

use der::Decode as _;
use x509_cert::{crl::CertificateList, Certificate};

use super::{pem, Collateral, CollateralError, PckCa};

/// One part of a collateral bundle; displays as its JSON field name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CollateralItem {
    /// The TCB info JSON document.
    TcbInfo,
    /// The QE identity JSON document.
    QeIdentity,
    /// The Intel SGX Root CA's CRL.
    RootCaCrl,
    /// The PCK CA's CRL.
    PckCrl,
    /// The chain that issued the PCK CRL.
    PckCrlIssuerChain,
    /// The chain that signed the TCB info.
    TcbInfoIssuerChain,
    /// The chain that signed the QE identity.
    QeIdentityIssuerChain,
    /// The platform's PCK certificate chain.
    PckCertificateChain,
}

impl fmt::Display for CollateralItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TcbInfo => "tcb_info",
            Self::QeIdentity => "qe_identity",
            Self::RootCaCrl => "root_ca_crl",
            Self::PckCrl => "pck_crl",
            Self::PckCrlIssuerChain => "pck_crl_issuer_chain",
            Self::TcbInfoIssuerChain => "tcb_info_issuer_chain",
            Self::QeIdentityIssuerChain => "qe_identity_issuer_chain",
            Self::PckCertificateChain => "pck_certificate_chain",
        })
    }
}

/// The closed interval of Unix times (seconds) in which every part of a
/// collateral bundle is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Latest issue time over all parts (`issueDate`, `thisUpdate`, `notBefore`).
    pub not_before: u64,
    /// Earliest expiry over all parts (`nextUpdate`, `notAfter`).
    pub not_after: u64,
    /// The part that sets `not_before`.
    pub latest_issued: CollateralItem,
    /// The part that sets `not_after`.
    pub earliest_expiring: CollateralItem,
}

impl Validity {
    /// Whether the bundle is current at `now`. Both ends are inclusive, as
    /// for X.509 `notAfter` and dcap-qvl's `nextUpdate` check.
    pub fn contains(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} (set by {}), {} (set by {})]",
            self.not_before, self.latest_issued, self.not_after, self.earliest_expiring
        )
    }
}

/// Narrows the window one dated part at a time.
struct WindowBuilder(Validity);

impl WindowBuilder {
    fn add(&mut self, item: CollateralItem, issued: u64, expires: Option<u64>) {
        if issued > self.0.not_before {
            self.0.not_before = issued;
            self.0.latest_issued = item;
        }
        // A CRL without nextUpdate never expires on its own.
        if let Some(expires) = expires.filter(|&e| e < self.0.not_after) {
            self.0.not_after = expires;
            self.0.earliest_expiring = item;
        }
    }
}

pub(super) fn compute(collateral: &Collateral) -> Result<Validity, CollateralError> {
    use CollateralItem as Item;
    let c = collateral.as_dcap();

    let mut window = WindowBuilder(Validity {
        not_before: collateral.tcb_info_issue_date()?,
        not_after: collateral.tcb_info_next_update()?,
        latest_issued: Item::TcbInfo,
        earliest_expiring: Item::TcbInfo,
    });

    let qe_identity = collateral.qe_identity()?;
    window.add(
        Item::QeIdentity,
        parse_timestamp(Item::QeIdentity, "issueDate", &qe_identity.issue_date)?,
        Some(parse_timestamp(
            Item::QeIdentity,
            "nextUpdate",
            &qe_identity.next_update,
        )?),
    );

    for (item, der) in [
        (Item::RootCaCrl, &c.root_ca_crl),
        (Item::PckCrl, &c.pck_crl),
    ] {
        let tbs = parse_crl(item, der)?.tbs_cert_list;
        window.add(
            item,
            tbs.this_update.to_unix_duration().as_secs(),
            tbs.next_update.map(|t| t.to_unix_duration().as_secs()),
        );
    }

    let chains = [
        (Item::PckCrlIssuerChain, Some(&c.pck_crl_issuer_chain)),
        (Item::TcbInfoIssuerChain, Some(&c.tcb_info_issuer_chain)),
        (
            Item::QeIdentityIssuerChain,
            Some(&c.qe_identity_issuer_chain),
        ),
        (Item::PckCertificateChain, c.pck_certificate_chain.as_ref()),
    ];
    for (item, pem_text) in chains {
        let Some(pem_text) = pem_text else { continue };
        for cert in parse_chain(item, pem_text)? {
            let validity = cert.tbs_certificate.validity;
            window.add(
                item,
                validity.not_before.to_unix_duration().as_secs(),
                Some(validity.not_after.to_unix_duration().as_secs()),
            );
        }
    }
    Ok(window.0)
}

/// Parse an Intel timestamp (`2025-06-19T10:16:03Z`: RFC 3339, UTC, whole
/// seconds, the only form PCS emits) into Unix seconds.
pub(super) fn parse_timestamp(
    item: CollateralItem,
    field: &str,
    text: &str,
) -> Result<u64, CollateralError> {
    parse_utc_seconds(text).ok_or_else(|| CollateralError::BadItem {
        item,
        problem: format!("{field} `{text}` is not a timestamp of the form YYYY-MM-DDTHH:MM:SSZ"),
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` in Unix seconds (the form Intel PCS and GitHub's
/// API emit); `None` for anything else.
pub(crate) fn parse_utc_seconds(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let separators_ok = bytes.len() == 20
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'Z'),
        ]
        .iter()
        .all(|&(at, expected)| bytes.get(at) == Some(&expected));
    if !separators_ok {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u16> {
        let digits = text.get(from..to)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let small = |from, to| number(from, to).and_then(|n| u8::try_from(n).ok());
    let date_time = der::DateTime::new(
        number(0, 4)?,
        small(5, 7)?,
        small(8, 10)?,
        small(11, 13)?,
        small(14, 16)?,
        small(17, 19)?,
    )
    .ok()?;
    Some(date_time.unix_duration().as_secs())
}

fn parse_crl(item: CollateralItem, der: &[u8]) -> Result<CertificateList, CollateralError> {
    CertificateList::from_der(der).map_err(|e| CollateralError::BadItem {
        item,
        problem: format!("not a DER X.509 CRL: {e}"),
    })
}

/// The PCK CA named as the CRL's issuer.
pub(super) fn crl_issuer_ca(der: &[u8]) -> Result<PckCa, CollateralError> {
    let issuer = parse_crl(CollateralItem::PckCrl, der)?.tbs_cert_list.issuer;
    PckCa::from_issuer(&issuer).ok_or_else(|| CollateralError::BadItem {
        item: CollateralItem::PckCrl,
        problem: format!("issuer `{issuer}` is neither Intel PCK CA"),
    })
}

/// Parse a PEM chain, which must hold at least one certificate.
pub(super) fn parse_chain(
    item: CollateralItem,
    pem_text: &str,
) -> Result<Vec<Certificate>, CollateralError> {
    let bad = |problem: String| CollateralError::BadItem { item, problem };
    let blocks = pem::decode_blocks(pem_text, "CERTIFICATE").map_err(bad)?;
    if blocks.is_empty() {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    blocks
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Certificate::from_der(der).map_err(|e| {
                bad(format!(
                    "certificate {index} is not a DER X.509 certificate: {e}"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_utc_seconds;

    #[test]
    fn parses_intel_timestamps() {
        // `date -u -d 2025-06-19T10:16:03Z +%s`
        assert_eq!(
            parse_utc_seconds("2025-06-19T10:16:03Z"),
            Some(1_750_328_163)
        );
        assert_eq!(parse_utc_seconds("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn rejects_other_forms() {
        for text in [
            "",
            "2025-06-19T10:16:03",
            "2025-06-19T10:16:03+00:00",
            "2025-06-19 10:16:03Z",
            "2025-13-19T10:16:03Z",
            "2025-06-19T25:16:03Z",
            "+025-06-19T10:16:03Z",
            "2025-06-19T10:16:03.5Z",
        ] {
            assert_eq!(parse_utc_seconds(text), None, "{text:?}");
        }
    }
}
