//! Quote parsing against real Intel quotes (dcap-qvl's `sample/` folder),
//! cross-checked with dcap-qvl's own parser and with offsets from Intel's
//! quote headers (notes/tdx-facts.md), plus malformed-input cases.

mod common;

use common::sample;
use easyenclave::input::decode_binary;
use easyenclave::quote::{
    qe_report_data_hash, PckCertChain, Quote, QuoteBuilder, QuoteError, SignatureData, TdBody,
    MAX_QUOTE_LEN,
};

/// The TDX sample quotes, decoded (the `.hex` files through `decode_binary`).
fn tdx_samples() -> Vec<(&'static str, Vec<u8>)> {
    [
        "tdx_quote",
        "tdx_quote_outdated",
        "tdx_quote_td15ex",
        "tdx-quote.hex",
        "quote-from-tappd.hex",
    ]
    .into_iter()
    .map(|name| (name, decode_binary(sample(name)).unwrap()))
    .collect()
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], offset: usize) -> usize {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize
}

/// Length of header + body, read straight from the documented layout:
/// 632 for v4, 54 + body size (u32 @50) for v5.
fn signed_len(bytes: &[u8]) -> usize {
    match u16_at(bytes, 0) {
        4 => 632,
        5 => 54 + u32_at(bytes, 50),
        v => panic!("sample has version {v}"),
    }
}

/// Where the signature data ends (after it there is only padding).
fn quote_end(bytes: &[u8]) -> usize {
    let signed = signed_len(bytes);
    signed + 4 + u32_at(bytes, signed)
}

#[test]
fn every_tdx_sample_parses_and_sgx_sample_is_not_a_td_quote() {
    for (name, bytes) in tdx_samples() {
        let quote = Quote::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(quote.header().tee_type, 0x81, "{name}");
    }
    let err = Quote::parse(&sample("sgx_quote")).unwrap_err();
    assert_eq!(err, QuoteError::NotTdQuote { version: 3 });
    assert!(
        err.to_string()
            .starts_with("not a TD quote: this is an SGX enclave quote"),
        "{err}"
    );
}

#[test]
fn v4_sample_fields_match_known_values() {
    let bytes = sample("tdx_quote");
    let quote = Quote::parse(&bytes).unwrap();
    let h = quote.header();
    assert_eq!((h.version, h.att_key_type, h.tee_type), (4, 2, 0x81));
    assert_eq!(
        hex::encode(h.qe_vendor_id),
        "939a7233f79c4ca9940a0db3957f0607"
    );
    assert!(matches!(quote.body(), TdBody::Td10(_)));

    let td = quote.td_report();
    assert_eq!(td.td_attributes.value(), 0x0000_0000_1000_0000);
    assert_eq!(td.td_attributes.flag_names(), ["SEPT_VE_DISABLE"]);
    assert!(!td.td_attributes.debug());
    // Field offsets from notes/tdx-facts.md, read directly from the bytes.
    assert_eq!(td.mr_td.as_slice(), &bytes[184..232]);
    assert_eq!(td.rtmrs()[0].as_slice(), &bytes[376..424]);
    assert_eq!(td.rtmr3.as_slice(), &bytes[520..568]);
    assert_eq!(td.report_data.as_slice(), &bytes[568..632]);

    let sig = quote.signature();
    assert_eq!(sig.byte_len(), u32_at(&bytes, 632));
    assert_eq!(sig.ecdsa_signature.as_slice(), &bytes[636..700]);
    assert_eq!(sig.attestation_key.as_slice(), &bytes[700..764]);
    // Intel's QE bound the attestation key into its report data.
    assert!(sig.qe_binding_matches());
    assert_eq!(
        &sig.qe_report.report_data[..32],
        qe_report_data_hash(&sig.attestation_key, &sig.qe_auth_data).as_slice()
    );
    let certs = sig.pck_cert_chain.certificates();
    assert_eq!(certs.len(), 3, "leaf, platform CA, root CA");
    for cert in &certs {
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(cert.ends_with("-----END CERTIFICATE-----"));
    }
    assert!(sig.pck_cert_chain.pem().contains(certs[1]));
}

#[test]
fn v5_samples_have_td15_bodies() {
    let outdated = Quote::parse(&sample("tdx_quote_outdated")).unwrap();
    assert_eq!(outdated.header().version, 5);
    assert_eq!(outdated.body().body_type(), 3);
    assert!(outdated.body().td15().is_some() && outdated.body().td15ex().is_none());

    let bytes = sample("tdx_quote_td15ex");
    let ex = Quote::parse(&bytes).unwrap();
    assert_eq!((ex.header().version, ex.body().body_type()), (5, 4));
    assert_eq!((u16_at(&bytes, 48), u32_at(&bytes, 50)), (4, 885));
    let fields = ex.body().td15ex().unwrap();
    // The TD 1.0 part starts right after the 6-byte body descriptor.
    assert_eq!(
        fields.base.base.mr_td.as_slice(),
        &bytes[54 + 136..54 + 184]
    );
    assert_eq!(ex.td_report(), &fields.base.base);
    assert_eq!(ex.signature().pck_cert_chain.certificates().len(), 3);
    assert!(ex.signature().qe_binding_matches());
}

/// Every field agrees with dcap-qvl's independent parser.
#[cfg(feature = "verify")]
#[test]
fn fields_agree_with_dcap_qvl() {
    use dcap_qvl::quote::{AuthData, Quote as DcapQuote, Report};
    for (name, bytes) in tdx_samples() {
        let ours = Quote::parse(&bytes).unwrap();
        let theirs = DcapQuote::parse(&bytes).unwrap();
        let (h, th) = (ours.header(), &theirs.header);
        assert_eq!(
            (
                h.version,
                h.att_key_type,
                h.tee_type,
                h.qe_svn,
                h.pce_svn,
                h.qe_vendor_id,
                h.user_data
            ),
            (
                th.version,
                th.attestation_key_type,
                th.tee_type,
                th.qe_svn,
                th.pce_svn,
                th.qe_vendor_id,
                th.user_data
            ),
            "{name}: header"
        );
        let t10 = theirs.report.as_td10().unwrap();
        let o10 = ours.td_report();
        assert_eq!(o10.tee_tcb_svn, t10.tee_tcb_svn, "{name}");
        assert_eq!(o10.mr_seam, t10.mr_seam, "{name}");
        assert_eq!(o10.mr_signer_seam, t10.mr_signer_seam, "{name}");
        assert_eq!(o10.seam_attributes, t10.seam_attributes, "{name}");
        assert_eq!(o10.td_attributes.0, t10.td_attributes, "{name}");
        assert_eq!(o10.xfam, t10.xfam, "{name}");
        assert_eq!(o10.mr_td, t10.mr_td, "{name}");
        assert_eq!(o10.mr_config_id, t10.mr_config_id, "{name}");
        assert_eq!(o10.mr_owner, t10.mr_owner, "{name}");
        assert_eq!(o10.mr_owner_config, t10.mr_owner_config, "{name}");
        assert_eq!(
            o10.rtmrs(),
            [t10.rt_mr0, t10.rt_mr1, t10.rt_mr2, t10.rt_mr3],
            "{name}"
        );
        assert_eq!(o10.report_data, t10.report_data, "{name}");
        match (&theirs.report, ours.body()) {
            (Report::TD10(_), TdBody::Td10(_)) => {}
            (Report::TD15(t), TdBody::Td15(o)) => {
                assert_eq!(
                    (o.tee_tcb_svn2, o.mr_servicetd),
                    (t.tee_tcb_svn2, t.mr_service_td)
                );
            }
            (Report::TD15Ex(t), TdBody::Td15Ex(o)) => {
                assert_eq!(
                    (o.base.tee_tcb_svn2, o.base.mr_servicetd),
                    (t.base.tee_tcb_svn2, t.base.mr_service_td)
                );
                assert_eq!((o.vmid, o.td_id, o.dev_info), (t.vmid, t.td_id, t.dev_info));
                assert_eq!(
                    (
                        o.init_service_td_hash,
                        o.init_service_td_attributes,
                        o.init_cpu_svn
                    ),
                    (
                        t.init_service_td_hash,
                        t.init_service_td_attributes,
                        t.init_cpu_svn
                    )
                );
                assert_eq!(
                    (
                        o.init_tee_tcb_svn,
                        o.init_tee_fmspc,
                        o.cur_service_td_hash,
                        o.cur_service_td_attributes
                    ),
                    (
                        t.init_tee_tcb_svn,
                        t.init_tee_fmspc,
                        t.cur_service_td_hash,
                        t.cur_service_td_attributes
                    )
                );
            }
            (t, o) => panic!("{name}: body kinds differ: {t:?} vs {}", o.name()),
        }
        let AuthData::V4(auth) = &theirs.auth_data else {
            panic!("{name}: dcap-qvl saw v3 auth data")
        };
        let sig = ours.signature();
        assert_eq!(sig.ecdsa_signature, auth.ecdsa_signature, "{name}");
        assert_eq!(sig.attestation_key, auth.ecdsa_attestation_key, "{name}");
        let qe = &auth.qe_report_data;
        assert_eq!(sig.qe_report.to_bytes(), qe.qe_report, "{name}");
        assert_eq!(sig.qe_report_signature, qe.qe_report_signature, "{name}");
        assert_eq!(sig.qe_auth_data, qe.qe_auth_data.data, "{name}");
        assert_eq!(qe.certification_data.cert_type, 5, "{name}");
        let mut chain = sig.pck_cert_chain.pem().as_bytes().to_vec();
        chain.resize(sig.pck_cert_chain.byte_len(), 0);
        assert_eq!(chain, qe.certification_data.body.data, "{name}");
        assert_eq!(ours.signed_bytes().len(), theirs.signed_length(), "{name}");
    }
}

#[test]
fn serialization_reproduces_the_samples_and_round_trips() {
    for (name, bytes) in tdx_samples() {
        let quote = Quote::parse(&bytes).unwrap();
        let end = quote_end(&bytes);
        let encoded = quote.to_bytes();
        assert_eq!(
            encoded,
            bytes[..end],
            "{name}: to_bytes differs from the sample"
        );
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "{name}: padding is zeros"
        );
        assert_eq!(Quote::parse(&encoded).unwrap(), quote, "{name}");
        assert_eq!(
            quote.signed_bytes(),
            bytes[..signed_len(&bytes)],
            "{name}: signed bytes"
        );
        let sig = quote.signature();
        let qe_report_at = signed_len(&bytes) + 4 + 134;
        assert_eq!(
            sig.qe_report.to_bytes().as_slice(),
            &bytes[qe_report_at..qe_report_at + 384],
            "{name}"
        );
    }
}

/// The parts of a parsed sample, reassembled with the builder.
#[test]
fn builder_reassembles_samples() {
    for (name, bytes) in tdx_samples() {
        let quote = Quote::parse(&bytes).unwrap();
        let builder = QuoteBuilder::new(quote.header().clone(), quote.body().clone()).unwrap();
        assert_eq!(builder.signed_bytes(), quote.signed_bytes(), "{name}");
        let rebuilt = builder.build(quote.signature().clone()).unwrap();
        assert_eq!(rebuilt.to_bytes(), bytes[..quote_end(&bytes)], "{name}");
    }
}

#[test]
fn builder_changes_show_up_in_the_quote() {
    let original = Quote::parse(&sample("tdx_quote")).unwrap();
    let mut report = original.td_report().clone();
    report.report_data = [0x5a; 64];
    report.rtmr3 = [0x33; 48];
    let chain = format!(
        "{}\0",
        original.signature().pck_cert_chain.certificates()[0]
    );
    let signature = SignatureData {
        qe_auth_data: vec![1, 2, 3],
        pck_cert_chain: PckCertChain::new(chain.into_bytes()).unwrap(),
        ..original.signature().clone()
    };
    let quote = QuoteBuilder::new(original.header().clone(), TdBody::Td10(report.clone()))
        .unwrap()
        .build(signature.clone())
        .unwrap();
    let bytes = quote.to_bytes();
    assert_eq!(&bytes[568..632], &[0x5a; 64]);
    assert_eq!(&bytes[520..568], &[0x33; 48]);
    let parsed = Quote::parse(&bytes).unwrap();
    assert_eq!(parsed.td_report(), &report);
    assert_eq!(parsed.signature(), &signature);
    assert_eq!(parsed.signature().pck_cert_chain.certificates().len(), 1);
    // The auth data changed, so the QE report no longer binds the key.
    assert!(!parsed.signature().qe_binding_matches());
}

#[test]
fn builder_refuses_what_parse_would_reject() {
    let v4 = Quote::parse(&sample("tdx_quote")).unwrap();
    let v5 = Quote::parse(&sample("tdx_quote_outdated")).unwrap();
    let err = QuoteBuilder::new(v4.header().clone(), v5.body().clone()).unwrap_err();
    assert_eq!(
        err,
        QuoteError::BodyNotAllowed {
            version: 4,
            body: "TD 1.5"
        }
    );

    let mut header = v4.header().clone();
    header.tee_type = 0;
    let err = QuoteBuilder::new(header, v4.body().clone()).unwrap_err();
    assert!(matches!(err, QuoteError::NotTdQuote { .. }));

    let builder = QuoteBuilder::new(v4.header().clone(), v4.body().clone()).unwrap();
    let long_auth = SignatureData {
        qe_auth_data: vec![0; 65536],
        ..v4.signature().clone()
    };
    let err = builder.clone().build(long_auth).unwrap_err();
    assert_eq!(
        err,
        QuoteError::FieldTooLong {
            field: "qe_auth_data",
            len: 65536,
            max: 65535
        }
    );

    let pem = v4.signature().pck_cert_chain.pem().repeat(80);
    let huge = SignatureData {
        pck_cert_chain: PckCertChain::new(pem.into_bytes()).unwrap(),
        ..v4.signature().clone()
    };
    assert!(matches!(
        builder.build(huge).unwrap_err(),
        QuoteError::Oversized {
            max: MAX_QUOTE_LEN,
            ..
        }
    ));
}

#[test]
fn every_truncation_is_an_error_and_padding_may_be_cut() {
    for (name, bytes) in tdx_samples() {
        let end = quote_end(&bytes);
        for len in 0..end {
            match Quote::parse(&bytes[..len]) {
                Err(QuoteError::Truncated {
                    available,
                    offset,
                    needed,
                    ..
                }) => {
                    assert!(
                        available < needed && offset + available == len,
                        "{name}[..{len}]"
                    );
                }
                other => panic!("{name}[..{len}]: expected truncation, got {other:?}"),
            }
        }
        for len in end..=bytes.len() {
            assert!(Quote::parse(&bytes[..len]).is_ok(), "{name}[..{len}]");
        }
    }
    let err = Quote::parse(&sample("tdx_quote")[..700]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "quote truncated: field `signature_data` needs 4300 bytes at offset 636, but only 64 remain"
    );
}

fn patched(name: &str, offset: usize, new: &[u8]) -> Vec<u8> {
    let mut bytes = sample(name);
    bytes[offset..offset + new.len()].copy_from_slice(new);
    bytes
}

#[test]
fn header_problems_are_named() {
    let parse = |bytes: Vec<u8>| Quote::parse(&bytes).unwrap_err();
    assert_eq!(
        parse(patched("tdx_quote", 0, &[6, 0])),
        QuoteError::UnsupportedVersion { version: 6 }
    );
    assert_eq!(
        parse(patched("tdx_quote", 0, &[3, 0])),
        QuoteError::UnsupportedVersion { version: 3 }
    );
    assert_eq!(
        parse(patched("tdx_quote", 4, &[0x80])),
        QuoteError::UnknownTeeType { tee_type: 0x80 }
    );
    assert_eq!(
        parse(patched("tdx_quote", 4, &[0])),
        QuoteError::NotTdQuote { version: 4 }
    );
    let err = parse(patched("tdx_quote", 2, &[3]));
    assert_eq!(err, QuoteError::WrongAttestationKeyType { att_key_type: 3 });
    assert!(err.to_string().contains("offset 2"), "{err}");
}

#[test]
fn v5_body_problems_are_named() {
    let parse = |bytes: Vec<u8>| Quote::parse(&bytes).unwrap_err();
    assert_eq!(
        parse(patched("tdx_quote_td15ex", 48, &[1])),
        QuoteError::UnknownBodyType { body_type: 1 }
    );
    assert_eq!(
        parse(patched("tdx_quote_td15ex", 48, &[3])),
        QuoteError::BodySizeMismatch {
            body_type: 3,
            declared: 885,
            expected: 648
        }
    );
}

#[test]
fn signature_data_problems_are_named() {
    let parse = |bytes: Vec<u8>| Quote::parse(&bytes).unwrap_err();
    // The v4 sample: signature data at 636 (length 4300 at 632), cert type
    // at 764, QE cert data length at 766, QE report at 770.
    let longer = parse(patched("tdx_quote", 632, &4301u32.to_le_bytes()));
    assert_eq!(
        longer,
        QuoteError::SignatureDataUnderrun {
            section: "signature data",
            offset: 636,
            declared: 4301,
            used: 4300
        }
    );
    let shorter = parse(patched("tdx_quote", 632, &4299u32.to_le_bytes()));
    assert!(
        matches!(
            shorter,
            QuoteError::SignatureDataOverrun {
                field: "qe_certification_data",
                offset: 770,
                needed: 4166,
                available: 4165,
                ..
            }
        ),
        "{shorter:?}"
    );
    assert!(
        shorter
            .to_string()
            .starts_with("signature data length mismatch"),
        "{shorter}"
    );

    let err = parse(patched("tdx_quote", 764, &[5]));
    assert_eq!(
        err,
        QuoteError::BadCertificationDataType {
            offset: 764,
            found: 5,
            expected: 6,
            meaning: "QE report certification data"
        }
    );
    // QE report 384 + signature 64, auth length 32 at 1218, auth data at 1220,
    // inner cert type at 1252, PEM at 1258.
    let err = parse(patched("tdx_quote", 1252, &[3]));
    assert!(
        matches!(
            err,
            QuoteError::BadCertificationDataType {
                offset: 1252,
                found: 3,
                expected: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        parse(patched("tdx_quote", 1300, &[0xff])),
        QuoteError::BadPemUtf8 { offset: 1300 }
    );
    let err = parse(patched("tdx_quote", 1258, b"X"));
    assert!(
        matches!(err, QuoteError::BadPemChain { offset: 1258, .. }),
        "{err:?}"
    );
}

#[test]
fn only_zero_padding_may_follow() {
    let bytes = patched("tdx_quote", 5000, &[7]);
    assert_eq!(
        Quote::parse(&bytes).unwrap_err(),
        QuoteError::TrailingData {
            offset: 5000,
            end: 4936,
            byte: 7
        }
    );
    let mut bytes = sample("tdx_quote_td15ex");
    bytes.push(1);
    assert!(matches!(
        Quote::parse(&bytes).unwrap_err(),
        QuoteError::TrailingData { offset: 5247, .. }
    ));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let mut bytes = sample("tdx_quote");
    bytes.resize(MAX_QUOTE_LEN, 0);
    assert!(
        Quote::parse(&bytes).is_ok(),
        "zero padding up to the cap is fine"
    );
    bytes.push(0);
    assert_eq!(
        Quote::parse(&bytes).unwrap_err(),
        QuoteError::Oversized {
            len: MAX_QUOTE_LEN + 1,
            max: MAX_QUOTE_LEN
        }
    );
    // Refused even when the content is garbage: the size check comes first.
    let garbage = vec![0xffu8; MAX_QUOTE_LEN + 1];
    assert!(matches!(
        Quote::parse(&garbage).unwrap_err(),
        QuoteError::Oversized { .. }
    ));
}

#[test]
fn json_shows_every_field_in_hex() {
    let bytes = sample("tdx_quote_td15ex");
    let quote = Quote::parse(&bytes).unwrap();
    let json = serde_json::to_value(&quote).unwrap();
    assert_eq!(json["header"]["version"], 5);
    assert_eq!(
        json["header"]["qe_vendor_id"],
        "939a7233f79c4ca9940a0db3957f0607"
    );
    let body = &json["body"];
    assert_eq!(body["kind"], "td1.5ex");
    assert_eq!(body["mr_td"], hex::encode(&bytes[54 + 136..54 + 184]));
    assert_eq!(body["rtmr0"], hex::encode(&bytes[54 + 328..54 + 376]));
    assert_eq!(body["td_attributes"]["value"], "0x0000000010000000");
    assert_eq!(
        body["td_attributes"]["flags"],
        serde_json::json!(["SEPT_VE_DISABLE"])
    );
    for field in [
        "tee_tcb_svn2",
        "mr_servicetd",
        "vmid",
        "td_id",
        "init_tee_fmspc",
        "cur_service_td_attributes",
    ] {
        assert!(!body[field].is_null(), "body.{field} missing");
    }
    let sig = &json["signature"];
    assert_eq!(sig["pck_cert_chain"].as_array().unwrap().len(), 3);
    assert_eq!(sig["qe_report"]["report_data"].as_str().unwrap().len(), 128);
    assert_eq!(
        sig["qe_auth_data"],
        hex::encode(&quote.signature().qe_auth_data)
    );
    // Every byte field is lower-case hex; only PEM text, names and the
    // attribute value are other strings.
    fn check_hex(path: &str, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => assert!(
                s.len() % 2 == 0 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
                "{path} = {s:?} is not lower-case hex"
            ),
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    if !matches!(key.as_str(), "kind" | "td_attributes" | "pck_cert_chain") {
                        check_hex(&format!("{path}.{key}"), v);
                    }
                }
            }
            _ => {}
        }
    }
    check_hex("quote", &json);
}

#[test]
fn text_rendering_lists_the_fields() {
    let quote = Quote::parse(&sample("tdx_quote")).unwrap();
    let text = quote.render_text();
    assert!(
        text.starts_with("TDX quote v4 with a TD 1.0 report body, 4936 bytes\n"),
        "{text}"
    );
    // Compare with runs of spaces collapsed: the column layout may change.
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let td = quote.td_report();
    let qe = &quote.signature().qe_report;
    for needle in [
        "qe_vendor_id 939a7233f79c4ca9940a0db3957f0607 (Intel)".to_string(),
        "td_attributes 0x0000000010000000 [SEPT_VE_DISABLE]".to_string(),
        format!("mr_td {}", hex::encode(td.mr_td)),
        format!("rtmr3 {}", hex::encode(td.rtmr3)),
        format!("report_data {}", hex::encode(td.report_data)),
        format!("mr_signer {}", hex::encode(qe.mr_signer)),
        format!("isv_svn {}", qe.isv_svn),
        "qe_report binding matches SHA-256".to_string(),
        "pck_cert_chain 3 PEM certificates".to_string(),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&needle)),
            "missing {needle:?} in\n{text}"
        );
    }
}

/// Quote files as users have them: raw, hex with `0x`, wrapped base64.
#[test]
fn quote_files_in_every_encoding_read_back() {
    use base64::Engine as _;
    use easyenclave::input::{read_binary, InputError};

    let dir = common::dcap_sample_dir();
    let raw = read_binary(dir.join("tdx_quote"), 64 * 1024).unwrap();
    assert_eq!(raw, sample("tdx_quote"));
    let from_hex = read_binary(dir.join("tdx-quote.hex"), 64 * 1024).unwrap();
    assert!(sample("tdx-quote.hex").starts_with(b"0x"));
    assert_eq!(Quote::parse(&from_hex).unwrap().header().version, 4);

    let tmp = tempfile::tempdir().unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let path = tmp.path().join("quote.b64");
    std::fs::write(&path, wrapped.join("\n")).unwrap();
    assert_eq!(read_binary(&path, 64 * 1024).unwrap(), raw);

    let err = read_binary(dir.join("tdx_quote"), 4096).unwrap_err();
    assert!(
        matches!(
            err,
            InputError::TooLarge {
                size: 5006,
                max: 4096,
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(&path, "BAACAIEA\nAAAA$AAA").unwrap();
    let err = read_binary(&path, 4096).unwrap_err().to_string();
    assert!(
        err.contains("'$' at line 2, column 5 is not a base64 character"),
        "{err}"
    );
}
