#!/usr/bin/env python3
"""Regenerate the test vectors in this folder, independently of the Rust code.

Writes canonical-json.json, workload-policy-v1.json, eventlog-v1.json,
attestation-v2.json and bundle-v1.json; reads allowlist-v1.json and launch-config-v1.json
(hand-written inputs). Uses only the Python standard library, so the
expected hashes come from a second implementation of the formats, not from
the code under test.

    python3 sdk/testdata/generate.py
"""

import base64
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_SAFE_INTEGER = 2**53 - 1


def jcs(value):
    """RFC 8785 canonical JSON for integer-only values (floats are rejected)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        assert abs(value) <= MAX_SAFE_INTEGER, value
        return str(value)
    if isinstance(value, str):
        # Python escapes exactly what RFC 8785 escapes: '"', '\\', the short
        # forms \b \f \n \r \t, and other C0 controls as lower-case \u00xx.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise TypeError(f"no canonical form for {value!r}")


def write(name, document):
    with open(os.path.join(HERE, name), "w", encoding="ascii") as f:
        json.dump(document, f, indent=2, ensure_ascii=True)
        f.write("\n")


# --- canonical JSON: vectors from RFC 8785 and its reference test data -------

RFC = "RFC 8785"
CYBERPHONE = "github.com/cyberphone/json-canonicalization testdata"
CANONICAL = [
    # (name, source, input text, expected canonical text or None, rejected at)
    (
        "sorting",
        RFC + " section 3.2.3 (keys ordered by UTF-16 code units)",
        r'''{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"}''',
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
        None,
    ),
    (
        "escaping-and-literals",
        RFC + " section 3.2.2 without its \"numbers\" member",
        r'''{"string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}''',
        '{"literals":[null,true,false],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
        None,
    ),
    (
        "numbers-rejected",
        RFC + " section 3.2.2 (floats are rejected, not formatted)",
        r'''{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "x", "literals": [null, true, false]}''',
        None,
        "/numbers/0",
    ),
    (
        "weird",
        CYBERPHONE + " weird.json",
        r'''{"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley",
            "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "</script>": "Browser Challenge"}''',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\U0001f602":"Smiley",'
        '"\ufb33":"Hebrew Letter Dalet With Dagesh"}',
        None,
    ),
    (
        "french",
        CYBERPHONE + " french.json (no locale-aware ordering)",
        '{"peach": "This sorting order", "p\u00e9ch\u00e9": "is wrong according to French",'
        ' "p\u00eache": "but canonicalization MUST", "sin": "ingnore locale"}',
        '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
        '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}',
        None,
    ),
    (
        "unicode",
        CYBERPHONE + " unicode.json (no Unicode normalization)",
        r'{"Unnormalized Unicode": "\u1e0d\u0307"}',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
        None,
    ),
    (
        "arrays",
        CYBERPHONE + " arrays.json",
        '[56, {"d": true, "10": null, "1": []}]',
        '[56,{"1":[],"10":null,"d":true}]',
        None,
    ),
    (
        "structures",
        CYBERPHONE + " structures.json with 56.0 written as 56",
        '{"1": {"f": {"f": "hi", "F": 5}, "\\n": 56}, "10": {}, "": "empty", "a": {}, "111": [{}], "A": {}}',
        '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
        None,
    ),
    (
        "structures-float-rejected",
        CYBERPHONE + " structures.json as published (56.0 is a float)",
        '{"1": {"f": {"f": "hi", "F": 5}, "\\n": 56.0}, "10": {}, "": "empty", "a": {}, "111": [{}], "A": {}}',
        None,
        "/1/\n",
    ),
]


def canonical_vectors():
    vectors = []
    for name, source, text, expected, rejected_at in CANONICAL:
        value = json.loads(text)
        vector = {"name": name, "source": source, "input": value}
        if expected is not None:
            assert jcs(value) == expected, (name, jcs(value), expected)
            vector["canonical"] = expected
        else:
            vector["rejected_at"] = rejected_at
        vectors.append(vector)
    write(
        "canonical-json.json",
        {
            "description": "RFC 8785 canonical JSON vectors. 'canonical' is the exact expected text; "
            "'rejected_at' is the JSON Pointer of the first value that has no canonical form here "
            "(non-integers). Generated by generate.py from the texts of the named sources.",
            "vectors": vectors,
        },
    )


# --- workload policy -----------------------------------------------------------

POLICY_TAG = b"easyenclave/workload-policy/v1\0"

# The rules of version 1, typed in again here (not read from the Rust code):
# a change on either side changes the digest and fails sdk/tests/formats.rs.
WORKLOAD_POLICY_V1 = {
    "version": 1,
    "refused_flags": ["privileged", "use_api_socket"],
    "namespace_fields": ["cgroup", "ipc", "network_mode", "pid", "userns_mode", "uts"],
    "refused_fields": ["cgroup_parent", "device_cgroup_rules", "devices", "gpus", "runtime"],
    "cap_add_allowed": [
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    ],
    "security_opt_allowed": ["no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"],
    "sysctl_prefixes_allowed": ["net."],
    "volume_types_allowed": ["bind", "tmpfs", "volume"],
    "docker_socket_paths": ["/run/docker.sock", "/var/run/docker.sock"],
    "network_drivers_refused": ["host", "ipvlan", "macvlan"],
}


def policy_digest(policy):
    return hashlib.sha256(POLICY_TAG + jcs(policy).encode("utf-8")).hexdigest()


def policy_vector():
    canonical = jcs(WORKLOAD_POLICY_V1)
    write(
        "workload-policy-v1.json",
        {
            "description": "The workload policy (version 1): the compose rules ee-init enforces, their "
            "RFC 8785 JSON and digest SHA-256(b'easyenclave/workload-policy/v1\\0' || JCS(policy)), "
            "recorded as 'policy' in every bundle event. Generated by generate.py.",
            "policy": WORKLOAD_POLICY_V1,
            "canonical": canonical,
            "digest": policy_digest(WORKLOAD_POLICY_V1),
        },
    )


# --- RTMR3 event log -----------------------------------------------------------

EVENT_TAG = b"easyenclave/rtmr3-event/v1\0"


def sha384(data):
    return hashlib.sha384(data).digest()


def event_log():
    with open(os.path.join(HERE, "launch-config-v1.json"), encoding="utf-8") as f:
        config = json.load(f)
    repo = config["repo"]
    artifacts = "https://api.github.com/repos/" + repo + "/actions/artifacts/"
    policy = policy_digest(WORKLOAD_POLICY_V1)
    v2 = hashlib.sha256(b"example bundle v2").hexdigest()
    return {
        "version": 1,
        "events": [
            {"type": "config", "config": config},
            {
                "type": "bundle",
                "digest": hashlib.sha256(b"example bundle v1").hexdigest(),
                "repo": repo,
                "artifact_id": 1234567890,
                "source": artifacts + "1234567890/zip",
                "policy": policy,
                "images_pinned": True,
            },
            {"type": "seal", "removed": ["shell", "getty", "ssh", "network-admin"]},
            {"type": "ready"},
            {
                "type": "bundle",
                "digest": v2,
                "repo": repo,
                "source": "redeploy without an artifact id",
                "policy": policy,
                "images_pinned": False,
            },
            {"type": "ready"},
            # v2 failed and the previous workload could not be restarted:
            # nothing runs until the next bundle event.
            {"type": "stopped", "digest": v2, "reason": "deploy failed; the previous deployment did not restart"},
            {
                "type": "bundle",
                "digest": hashlib.sha256(b"example bundle v3").hexdigest(),
                "repo": repo,
                "source": "inline",
                "policy": policy,
                "images_pinned": True,
            },
        ],
    }


def eventlog_vector(log):
    digests = [sha384(EVENT_TAG + jcs(event).encode("utf-8")) for event in log["events"]]
    rtmr3 = bytes(48)
    for digest in digests:
        rtmr3 = sha384(rtmr3 + digest)
    write(
        "eventlog-v1.json",
        {
            "description": "An RTMR3 event log (version 1) with the digest of each event, "
            "SHA-384(b'easyenclave/rtmr3-event/v1\\0' || RFC 8785 JSON of the event), RTMR3 after "
            "extending them in order from zero, and the log digest SHA-384(RFC 8785 JSON of the log). "
            "Generated by generate.py.",
            "log": log,
            "event_digests": [d.hex() for d in digests],
            "rtmr3": rtmr3.hex(),
            "log_digest": sha384(jcs(log).encode("utf-8")).hex(),
        },
    )


# --- REPORTDATA and the attestation document -----------------------------------

TAGS = {
    "publish": b"easyenclave/reportdata/publish/v2\0",
    "challenge": b"easyenclave/reportdata/challenge/v1\0",
    "ra_tls": b"easyenclave/reportdata/ra-tls/v1\0",
}


def report_data(purpose, statement):
    return hashlib.sha512(TAGS[purpose] + jcs(statement).encode("utf-8")).hexdigest()


def attestation_vector(log):
    with open(os.path.join(HERE, "allowlist-v1.json"), "rb") as f:
        allowlist_sha256 = hashlib.sha256(f.read()).hexdigest()
    config = log["events"][0]["config"]
    document = {
        "version": 2,
        "repo": config["repo"],
        "endpoint": config["endpoint"],
        "release_tag": "deploy-20250620-101500",
        "timestamp": 1750414500,
        "quote": base64.b64encode(b"placeholder: the format does not parse the quote").decode(),
        "event_log": log,
        "allowlist": {
            "url": "https://github.com/example-org/ee-image/releases/download/v0.1.0/allowlist-v1.json",
            "sha256": allowlist_sha256,
        },
        "image_id": config["image_id"],
    }
    publish = {
        "repo": document["repo"],
        "endpoint": document["endpoint"],
        "release_tag": document["release_tag"],
        "timestamp": document["timestamp"],
        "event_log_digest": sha384(jcs(log).encode("utf-8")).hex(),
        "allowlist": document["allowlist"],
    }
    spki_der = bytes.fromhex(
        # DER SubjectPublicKeyInfo of a P-256 key (the generator point as the public key).
        "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    )
    challenge = {"nonce": "00112233445566778899aabbccddeeff"}
    ra_tls = {"spki_sha256": hashlib.sha256(spki_der).hexdigest()}
    write(
        "attestation-v2.json",
        {
            "description": "An attestation document (version 2) and REPORTDATA vectors: "
            "SHA-512(purpose tag || RFC 8785 JSON of the statement). The document's quote is a "
            "placeholder; its allowlist.sha256 is the SHA-256 of allowlist-v1.json. "
            "Generated by generate.py.",
            "document": document,
            "publish": {"statement": jcs(publish), "report_data": report_data("publish", publish)},
            "challenge": {
                "statement": jcs(challenge),
                "nonce": challenge["nonce"],
                "report_data": report_data("challenge", challenge),
            },
            "ra_tls": {
                "statement": jcs(ra_tls),
                "spki_der": spki_der.hex(),
                "report_data": report_data("ra_tls", ra_tls),
            },
        },
    )


# --- bundle digest -------------------------------------------------------------

BUNDLE_TAG = b"easyenclave/bundle/v1\0"

# (path, content, executable), deliberately not in manifest order. The paths
# pin down the ordering (plain UTF-8 byte order: "a-b" < "a/b" < "a0", and
# U+FB33 before U+1F600 although UTF-16 orders them the other way) and JSON
# escaping (a double quote, non-ASCII).
BUNDLE_FILES = [
    ("compose.yaml", b'services:\n  web:\n    image: example/web:1\n    ports: ["8080:8080"]\n', False),
    ("\U0001f600.txt", b"grinning\n", False),
    ("bin/start.sh", b"#!/bin/sh\nexec web --port 8080\n", True),
    ("a0", b"0", False),
    ("a/b", b"x", False),
    ("a-b", b"", False),
    ("images/web.tar", bytes(range(256)), False),
    ("donn\u00e9es/\u00e9t\u00e9.txt", "\u00e9t\u00e9\n".encode("utf-8"), False),
    ("\ufb33.txt", b"dalet\n", False),
    (".env.example", b"API_KEY=\n", False),
    ('say "hi".txt', b"hi\n", True),
]


def bundle_vector():
    files = [
        {
            "path": path,
            "executable": executable,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        for path, content, executable in BUNDLE_FILES
    ]
    files.sort(key=lambda f: f["path"].encode("utf-8"))
    manifest = jcs({"version": 1, "files": files})
    write(
        "bundle-v1.json",
        {
            "description": "A bundle (format version 1): its files with base64 content and executable flag, "
            "the RFC 8785 JSON of its manifest (files sorted by path bytes) and the bundle digest "
            "SHA-256(b'easyenclave/bundle/v1\\0' || manifest). Generated by generate.py.",
            "files": [
                {"path": path, "executable": executable, "content_base64": base64.b64encode(content).decode()}
                for path, content, executable in BUNDLE_FILES
            ],
            "manifest": manifest,
            "digest": hashlib.sha256(BUNDLE_TAG + manifest.encode("utf-8")).hexdigest(),
        },
    )


if __name__ == "__main__":
    canonical_vectors()
    policy_vector()
    log = event_log()
    eventlog_vector(log)
    attestation_vector(log)
    bundle_vector()
