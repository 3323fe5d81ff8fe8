//! Cosign signatures: the public keys `--verify-key` names, the signatures a registry holds for
//! a digest (cosign's `sha256-<hex>.sig` tag, and Sigstore bundles found through the referrers
//! API or its fallback tag `sha256-<hex>`), and whether an image may be written.
//!
//! What a signature says is read only after it verified with one of the keys, and every parser
//! here is pure and fuzzed. This module never fetches a layer: a pull asks it before anything
//! else, and writes nothing when it says no. Keyless signatures (Fulcio certificates, Rekor
//! entries) are not checked: only signatures by the keys given count.

use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_SIGNATURES, MAX_SIGNATURE_DOCUMENT};
use crate::progress::Progress;
use crate::registry::auth::base64_decode;
use crate::registry::client::FetchedManifest;
use crate::registry::Registry;
use miniserde::Deserialize;
use ring::signature::{self as ring_signature, UnparsedPublicKey, VerificationAlgorithm};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A simple-signing payload's layer in a cosign `.sig` manifest.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a layer's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A Sigstore bundle (cosign 3's default), as an artifact type and a layer's media type.
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// What cosign 3 signs for an image: an in-toto statement of this predicate type.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The keys an image must be signed by (one of them).
pub struct Keys(Vec<Key>);

struct Key {
    /// The file it came from, for messages.
    name: String,
    kind: KeyKind,
    /// What ring takes: the EC point, the Ed25519 key, or the RSAPublicKey DER.
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256 with SHA-256 (cosign's `generate-key-pair`).
    EcdsaP256,
    Ed25519,
    /// RSA, PKCS#1 v1.5 or PSS with SHA-256, 2048 bits or more.
    Rsa,
}

impl Keys {
    /// Reads the PEM public keys of `--verify-key`; `None` when none was given.
    pub fn load(paths: &[PathBuf]) -> Result<Option<Keys>, Error> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for path in paths {
            let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let (kind, bytes) = parse_public_key(&pem).map_err(|problem| {
                Error::Usage(format!("--verify-key {}: {problem}", path.display()))
            })?;
            keys.push(Key {
                name: path.display().to_string(),
                kind,
                bytes,
            });
        }
        Ok(Some(Keys(keys)))
    }

    /// The key whose signature `signature` is over `message`, if any.
    fn signer(&self, message: &[u8], signature: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|key| key.verifies(message, signature))
            .map(|key| key.name.as_str())
    }
}

impl Key {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        verifies(self.kind, &self.bytes, message, signature)
    }
}

/// Whether `signature` over `message` is by the key `key` (as `parse_public_key` gives it).
pub fn verifies(kind: KeyKind, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let algorithms: &[&dyn VerificationAlgorithm] = match kind {
        KeyKind::EcdsaP256 => &[&ring_signature::ECDSA_P256_SHA256_ASN1],
        KeyKind::Ed25519 => &[&ring_signature::ED25519],
        KeyKind::Rsa => &[
            &ring_signature::RSA_PKCS1_2048_8192_SHA256,
            &ring_signature::RSA_PSS_2048_8192_SHA256,
        ],
    };
    algorithms.iter().any(|algorithm| {
        UnparsedPublicKey::new(*algorithm, key)
            .verify(message, signature)
            .is_ok()
    })
}

/// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) as cosign writes `cosign.pub`: its kind, and the
/// key in the form ring takes.
pub fn parse_public_key(pem: &[u8]) -> Result<(KeyKind, Vec<u8>), String> {
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let text = std::str::from_utf8(pem).map_err(|_| "it is not a PEM text file".to_string())?;
    let der = pem_block(text, "PUBLIC KEY").ok_or(
        "it holds no -----BEGIN PUBLIC KEY----- block (cosign.pub, or openssl pkey -pubout)",
    )?;
    let malformed = || "its public key is malformed".to_string();
    let (spki, _) = der_element(&der, 0x30).ok_or_else(malformed)?;
    let (algorithm, rest) = der_element(spki, 0x30).ok_or_else(malformed)?;
    let (key, _) = der_element(rest, 0x03).ok_or_else(malformed)?;
    // A BIT STRING: its first byte counts unused bits, none for a key.
    let key = key.strip_prefix(&[0]).ok_or_else(malformed)?;
    let (oid, params) = der_element(algorithm, 0x06).ok_or_else(malformed)?;
    let kind = match oid {
        EC if der_element(params, 0x06).map(|(curve, _)| curve) == Some(P256) => KeyKind::EcdsaP256,
        EC => return Err("it is an EC key on a curve other than P-256".into()),
        ED25519 => KeyKind::Ed25519,
        RSA => KeyKind::Rsa,
        _ => return Err("it is not an ECDSA P-256, Ed25519 or RSA key".into()),
    };
    Ok((kind, key.to_vec()))
}

/// The DER inside `-----BEGIN LABEL-----` … `-----END LABEL-----`.
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    base64_decode(&body).filter(|der| !der.is_empty())
}

/// One DER element of tag `tag` at the start of `input`: its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, rest) = rest.split_first()?;
    let (length, rest) = match length {
        0..=0x7f => (usize::from(length), rest),
        0x81..=0x83 => {
            let n = usize::from(length & 0x7f);
            let bytes = rest.get(..n)?;
            let length = bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (length, &rest[n..])
        }
        _ => return None,
    };
    Some((rest.get(..length)?, &rest[length..]))
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Option<Identity>,
    image: ImageField,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: Option<String>,
}

#[derive(Deserialize)]
struct ImageField {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// What a verified signature names.
#[derive(Debug, PartialEq, Eq)]
pub struct Named {
    /// `sha256:<hex>`, as signed.
    pub digest: String,
    /// `critical.identity.docker-reference`, shown with `--verbose`.
    pub reference: Option<String>,
}

/// A simple-signing payload (`{"critical":{"image":{"docker-manifest-digest":…},…}}`).
pub fn parse_payload(bytes: &[u8]) -> Result<Named, String> {
    let payload: SimpleSigning =
        from_json(bytes, "the payload is not cosign's simple-signing JSON")?;
    if payload.critical.kind != "cosign container image signature" {
        return Err(format!(
            "the payload's type is {:?}, not a cosign container image signature",
            payload.critical.kind.chars().take(80).collect::<String>()
        ));
    }
    Ok(Named {
        digest: payload.critical.image.docker_manifest_digest,
        reference: payload.critical.identity.and_then(|i| i.docker_reference),
    })
}

#[derive(Deserialize)]
struct BundleJson {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "verificationMaterial")]
    verification_material: Option<Material>,
    #[serde(rename = "dsseEnvelope")]
    dsse_envelope: Option<Envelope>,
    #[serde(rename = "messageSignature")]
    message_signature: Option<MessageSignature>,
}

#[derive(Deserialize)]
struct Material {
    certificate: Option<Present>,
    #[serde(rename = "x509CertificateChain")]
    x509_certificate_chain: Option<Present>,
}

/// An object whose contents do not matter here, only that it is there.
#[derive(Deserialize)]
struct Present {}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
struct MessageSignature {
    #[serde(rename = "messageDigest")]
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

/// What a Sigstore bundle signs, and how.
#[derive(Debug, PartialEq, Eq)]
pub enum Bundle {
    /// A DSSE envelope: the signatures are over `pae(payload_type, payload)`.
    Dsse {
        payload_type: String,
        payload: Vec<u8>,
        signatures: Vec<Vec<u8>>,
    },
    /// A signature over the artifact's bytes (the manifest), whose sha256 is `digest`.
    Message { digest: Vec<u8>, signature: Vec<u8> },
    /// Signed with a certificate (Fulcio): not checked, only keys count.
    Keyless,
}

/// A Sigstore bundle, v0.1 to v0.3, as JSON.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, String> {
    let bundle: BundleJson = from_json(bytes, "the bundle is not Sigstore's bundle JSON")?;
    if !bundle
        .media_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/vnd.dev.sigstore.bundle"))
    {
        return Err("the bundle names no Sigstore bundle media type".into());
    }
    if bundle
        .verification_material
        .is_some_and(|m| m.certificate.is_some() || m.x509_certificate_chain.is_some())
    {
        return Ok(Bundle::Keyless);
    }
    let base64 = |what: &str, text: &str| {
        base64_decode(text).ok_or_else(|| format!("the bundle's {what} is not base64"))
    };
    match (bundle.dsse_envelope, bundle.message_signature) {
        (Some(envelope), _) => Ok(Bundle::Dsse {
            payload: base64("payload", &envelope.payload)?,
            payload_type: envelope.payload_type,
            signatures: envelope
                .signatures
                .iter()
                .take(MAX_SIGNATURES)
                .map(|s| base64("signature", &s.sig))
                .collect::<Result<_, _>>()?,
        }),
        (None, Some(message)) => {
            let digest = message
                .message_digest
                .filter(|d| d.algorithm == "SHA2_256")
                .ok_or("the bundle's message digest is not SHA2_256")?;
            Ok(Bundle::Message {
                digest: base64("message digest", &digest.digest)?,
                signature: base64("signature", &message.signature)?,
            })
        }
        (None, None) => {
            Err("the bundle holds neither a DSSE envelope nor a message signature".into())
        }
    }
}

/// DSSE's pre-authentication encoding: what an envelope's signatures are over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct StatementSubject {
    digest: BTreeMap<String, String>,
}

/// The digests an in-toto statement of cosign's signing predicate names (`sha256:<hex>` each).
pub fn parse_statement(bytes: &[u8]) -> Result<Vec<String>, String> {
    let statement: Statement = from_json(bytes, "the statement is not in-toto JSON")?;
    if !statement.kind.starts_with("https://in-toto.io/Statement/") {
        return Err("the envelope holds no in-toto statement".into());
    }
    if statement.predicate_type != SIGN_PREDICATE {
        return Err(format!(
            "the statement is an attestation ({}), not cosign's signature",
            statement
                .predicate_type
                .chars()
                .take(80)
                .collect::<String>()
        ));
    }
    Ok(statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256").map(|hex| format!("sha256:{hex}")))
        .collect())
}

/// A manifest (or index) a pull resolved, as fetched: a signature may name its digest.
pub struct Subject<'a> {
    pub digest: &'a Digest,
    pub bytes: &'a [u8],
}

/// What one signature turned out to be.
enum Seen {
    /// By one of the keys, naming these digests (and, in a simple-signing payload, an image
    /// name, shown with `--verbose`).
    Names {
        key: String,
        digests: Vec<String>,
        reference: Option<String>,
    },
    /// By one of the keys, over something that names no image.
    Nameless { key: String, why: String },
    /// By none of the keys, or keyless.
    Foreign,
}

impl Seen {
    /// For `--verbose`: one line per signature tried.
    fn describe(&self) -> String {
        match self {
            Seen::Names {
                key,
                digests,
                reference,
            } => format!(
                "a signature by {key} naming {}{}",
                digests.join(", "),
                reference
                    .as_deref()
                    .map(|r| format!(" (docker-reference {r})"))
                    .unwrap_or_default()
            ),
            Seen::Nameless { key, why } => format!("a signature by {key} naming no image: {why}"),
            Seen::Foreign => "a signature by none of the keys".into(),
        }
    }
}

/// Checks that one of `subjects` (the index and the platform manifest, or the one manifest) is
/// signed by one of `keys`. `image` names it in messages, `after` says what became of it when
/// the answer is no (exit 6, with the reason).
pub fn check(
    registry: &Registry,
    image: &str,
    subjects: &[Subject],
    keys: &Keys,
    after: &'static str,
) -> Result<(), Error> {
    let progress = registry.progress();
    let mut seen: Vec<Seen> = Vec::new();
    for subject in subjects {
        classic(registry, subject, keys, &mut seen)?;
        if accepted(&seen, subjects, progress) {
            return Ok(());
        }
        bundles(registry, subject, keys, &mut seen)?;
        if accepted(&seen, subjects, progress) {
            return Ok(());
        }
    }
    let digest = subjects
        .last()
        .map(|s| s.digest.to_string())
        .unwrap_or_default();
    let reason = seen
        .iter()
        .find_map(|s| match s {
            Seen::Names { digests, .. } => Some(format!(
                "the signature names another image ({})",
                digests.first().map_or("no digest", String::as_str)
            )),
            _ => None,
        })
        .or_else(|| {
            seen.iter().find_map(|s| match s {
                Seen::Nameless { why, .. } => Some(format!("the signature names no image: {why}")),
                _ => None,
            })
        })
        .unwrap_or_else(|| {
            if seen.is_empty() {
                "no signature".into()
            } else {
                "no signature by these keys".into()
            }
        });
    Err(Error::Unverified {
        image: image.to_string(),
        digest,
        reason,
        after,
    })
}

/// Whether a signature seen so far names one of `subjects`; says which with `--verbose`.
fn accepted(seen: &[Seen], subjects: &[Subject], progress: &Progress) -> bool {
    seen.iter().any(|s| match s {
        Seen::Names { key, digests, .. } => {
            let named = subjects
                .iter()
                .find(|subject| digests.contains(&subject.digest.to_string()));
            if let Some(subject) = named {
                progress.info(&format!("  signature by {key} over {}", subject.digest));
            }
            named.is_some()
        }
        _ => false,
    })
}

/// cosign's classic form: the `sha256-<hex>.sig` tag's manifest, a simple-signing payload per
/// layer with its signature in an annotation.
fn classic(
    registry: &Registry,
    subject: &Subject,
    keys: &Keys,
    seen: &mut Vec<Seen>,
) -> Result<(), Error> {
    let tag = format!("sha256-{}.sig", subject.digest.hex());
    let Some(fetched) = registry.lookup_manifest(&tag)? else {
        registry.progress().detail(&format!("  no {tag}"));
        return Ok(());
    };
    let manifest = signature_manifest(&fetched, &tag)?;
    for layer in manifest.layers.iter().take(MAX_SIGNATURES) {
        if layer.media_type != SIMPLE_SIGNING {
            continue;
        }
        let signature = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .and_then(|s| base64_decode(s));
        let outcome = match signature {
            None => Seen::Foreign,
            Some(signature) => {
                let descriptor = layer.descriptor(&tag)?;
                let payload = registry.small_blob(&descriptor, &format!("a payload of {tag}"))?;
                // The payload is read only once a key vouches for it.
                match keys.signer(&payload, &signature) {
                    None => Seen::Foreign,
                    Some(key) => match parse_payload(&payload) {
                        Ok(named) => Seen::Names {
                            key: key.to_string(),
                            digests: vec![named.digest],
                            reference: named.reference,
                        },
                        Err(why) => Seen::Nameless {
                            key: key.to_string(),
                            why,
                        },
                    },
                }
            }
        };
        registry
            .progress()
            .detail(&format!("  {tag}: {}", outcome.describe()));
        seen.push(outcome);
    }
    Ok(())
}

/// cosign 3's Sigstore bundles: referrers of the digest (the API, else its fallback tag
/// `sha256-<hex>`) whose artifact type is a bundle, each a manifest with the bundle as layer.
fn bundles(
    registry: &Registry,
    subject: &Subject,
    keys: &Keys,
    seen: &mut Vec<Seen>,
) -> Result<(), Error> {
    let Some(index) = registry.referrers(subject.digest)? else {
        return Ok(());
    };
    let what = format!("the referrers of {}", subject.digest);
    if index.len() > MAX_SIGNATURE_DOCUMENT {
        return Err(too_large(&what));
    }
    let index: ReferrersJson =
        from_json(&index, "it is not an OCI index").map_err(|detail| Error::Invalid {
            what: what.clone(),
            detail,
        })?;
    let bundles = index
        .manifests
        .iter()
        .filter(|m| m.artifact_type.as_deref() == Some(BUNDLE))
        .take(MAX_SIGNATURES);
    for entry in bundles {
        let digest = Digest::parse(&entry.digest).map_err(|detail| Error::Invalid {
            what: what.clone(),
            detail,
        })?;
        let manifest = registry.manifest(&digest.to_string())?;
        let manifest = signature_manifest(&manifest, &what)?;
        let Some(layer) = manifest.layers.iter().find(|l| l.media_type == BUNDLE) else {
            continue;
        };
        let bytes = registry.small_blob(&layer.descriptor(&what)?, "a Sigstore bundle")?;
        let outcome = match parse_bundle(&bytes) {
            Err(why) => {
                registry
                    .progress()
                    .detail(&format!("  bundle {digest}: {why}"));
                seen.push(Seen::Foreign);
                continue;
            }
            Ok(bundle) => judge_bundle(bundle, subject, keys),
        };
        registry
            .progress()
            .detail(&format!("  bundle {digest}: {}", outcome.describe()));
        seen.push(outcome);
    }
    Ok(())
}

/// A bundle's signature checked with the keys, then what it signs read.
fn judge_bundle(bundle: Bundle, subject: &Subject, keys: &Keys) -> Seen {
    match bundle {
        Bundle::Keyless => Seen::Foreign,
        Bundle::Message { digest, signature } => match keys.signer(subject.bytes, &signature) {
            // The signature is over the manifest's bytes, and its digest must be theirs.
            Some(key) if hex(&digest) == subject.digest.hex() => Seen::Names {
                key: key.to_string(),
                digests: vec![subject.digest.to_string()],
                reference: None,
            },
            Some(key) => Seen::Nameless {
                key: key.to_string(),
                why: "its message digest is not that of the manifest".into(),
            },
            None => Seen::Foreign,
        },
        Bundle::Dsse {
            payload_type,
            payload,
            signatures,
        } => {
            let message = pae(&payload_type, &payload);
            let Some(key) = signatures.iter().find_map(|s| keys.signer(&message, s)) else {
                return Seen::Foreign;
            };
            let key = key.to_string();
            if payload_type != IN_TOTO {
                return Seen::Nameless {
                    key,
                    why: format!("its payload is {payload_type:?}, not an in-toto statement"),
                };
            }
            match parse_statement(&payload) {
                Ok(digests) => Seen::Names {
                    key,
                    digests,
                    reference: None,
                },
                Err(why) => Seen::Nameless { key, why },
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct ReferrersJson {
    manifests: Vec<ReferrerEntry>,
}

#[derive(Deserialize)]
struct ReferrerEntry {
    digest: String,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct SignatureManifest {
    layers: Vec<SignatureLayer>,
}

#[derive(Deserialize)]
struct SignatureLayer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    annotations: Option<BTreeMap<String, String>>,
}

impl SignatureLayer {
    fn descriptor(&self, what: &str) -> Result<crate::manifest::Descriptor, Error> {
        if self.size > MAX_SIGNATURE_DOCUMENT as u64 {
            return Err(too_large(what));
        }
        Ok(crate::manifest::Descriptor {
            media_type: self.media_type.clone(),
            digest: Digest::parse(&self.digest).map_err(|detail| Error::Invalid {
                what: what.to_string(),
                detail,
            })?,
            size: self.size,
        })
    }
}

/// A signature's manifest (a `.sig` tag's, or a bundle's): its layers.
fn signature_manifest(fetched: &FetchedManifest, what: &str) -> Result<SignatureManifest, Error> {
    if fetched.bytes.len() > MAX_SIGNATURE_DOCUMENT {
        return Err(too_large(what));
    }
    from_json(&fetched.bytes, "it is not an OCI manifest").map_err(|detail| Error::Invalid {
        what: what.to_string(),
        detail,
    })
}

fn too_large(what: &str) -> Error {
    Error::Invalid {
        what: what.to_string(),
        detail: format!(
            "it is larger than the {} KiB a signature document may be",
            MAX_SIGNATURE_DOCUMENT >> 10
        ),
    }
}

/// JSON of type `T` in `bytes`, or `problem`.
fn from_json<T: Deserialize>(bytes: &[u8], problem: &str) -> Result<T, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| crate::limits::json(text).ok())
        .ok_or_else(|| problem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfP/H/mFuSDrQVA+GuilcbEjOrCVJ
G9gr+P6kpo5+Xj4GKJZbeZai6uWybzgpwhRE0nVRRu/G5GQBjlywLKochA==
-----END PUBLIC KEY-----
";
    /// A payload, and its signature by `P256`'s key (made with Python's `cryptography`).
    const PAYLOAD: &str = r#"{"critical":{"image":{"docker-manifest-digest":"sha256:abababababababababababababababababababababababababababababababab"},"type":"cosign container image signature"}}"#;
    const SIGNATURE: &str = "3045022075cb9031bff807146b0b17e1276c68cadbea5bf1f303bedb74556f6e2ccdc3e1022100f5a01e68368e412f019949a3dce87b77c775a51bfd7420a7ed2a230f1f09231f";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn reads_public_keys_and_verifies_with_them() {
        let (kind, key) = parse_public_key(P256.as_bytes()).unwrap();
        assert_eq!((kind, key.len(), key[0]), (KeyKind::EcdsaP256, 65, 4));
        let signature = unhex(SIGNATURE);
        assert!(verifies(kind, &key, PAYLOAD.as_bytes(), &signature));
        assert!(!verifies(kind, &key, b"another payload", &signature));
        assert!(!verifies(kind, &key, PAYLOAD.as_bytes(), &signature[..40]));
        let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAbKvEKfsljiYfwBkyjsAEHLcnguQYghNdLhct7hFN338=\n-----END PUBLIC KEY-----\n";
        let (kind, key) = parse_public_key(ed25519.as_bytes()).unwrap();
        assert_eq!((kind, key.len()), (KeyKind::Ed25519, 32));
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE1sN+HXg+P3gw910bh8TLyJVh8iv+3bsA
BBf2wJb77bEc6RKbSnaIIGw/D5tg2xTHn5xE4iZ9SUUzfDpb2WJoOrnaK9ds6ARb
D492nVlAzO34hQYGLnzi9emQ8N0Sh+9Q
-----END PUBLIC KEY-----";
        assert!(parse_public_key(p384.as_bytes())
            .unwrap_err()
            .contains("other than P-256"));
        for bad in [
            "",
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
        ] {
            assert!(parse_public_key(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_payloads_statements_and_bundles() {
        let named = parse_payload(PAYLOAD.as_bytes()).unwrap();
        assert_eq!(named.digest, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(named.reference, None);
        assert!(parse_payload(b"not json").is_err());
        assert!(parse_payload(
            br#"{"critical":{"image":{"docker-manifest-digest":"sha256:00"},"type":"atomic container signature"}}"#
        )
        .is_err());

        let statement = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"cd"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}"#;
        assert_eq!(parse_statement(statement).unwrap(), ["sha256:cd"]);
        let attestation = String::from_utf8_lossy(statement).replace(
            "https://sigstore.dev/cosign/sign/v1",
            "https://spdx.dev/Document",
        );
        assert!(parse_statement(attestation.as_bytes())
            .unwrap_err()
            .contains("attestation"));

        let dsse = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"}},"dsseEnvelope":{"payload":"aGk=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AAEC","keyid":""}]}}"#;
        assert_eq!(
            parse_bundle(dsse.as_bytes()).unwrap(),
            Bundle::Dsse {
                payload_type: IN_TOTO.into(),
                payload: b"hi".to_vec(),
                signatures: vec![vec![0, 1, 2]],
            }
        );
        let message = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAEC"},"signature":"AwQ="}}"#;
        assert_eq!(
            parse_bundle(message.as_bytes()).unwrap(),
            Bundle::Message {
                digest: vec![0, 1, 2],
                signature: vec![3, 4],
            }
        );
        let keyless = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{"rawBytes":"AA=="}},"messageSignature":{"signature":"AA=="}}"#;
        assert_eq!(parse_bundle(keyless.as_bytes()).unwrap(), Bundle::Keyless);
        assert!(parse_bundle(br#"{"mediaType":"text/plain"}"#).is_err());
        assert!(parse_bundle(b"[]").is_err());
    }

    #[test]
    fn pre_authentication_encoding_is_dsse_s() {
        // The DSSE specification's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn signature_documents_are_capped_before_they_are_parsed() {
        let entry = r#"{"mediaType":"x","digest":"sha256:00","size":1},"#;
        let mut bytes = br#"{"layers":["#.to_vec();
        bytes.extend(
            entry
                .repeat(MAX_SIGNATURE_DOCUMENT / entry.len() + 1)
                .as_bytes(),
        );
        let fetched = FetchedManifest {
            digest: Digest::of_bytes(&bytes),
            bytes,
            content_type: None,
        };
        let error = signature_manifest(&fetched, "x.sig").err().unwrap();
        assert!(
            error.to_string().contains("larger than the 256 KiB"),
            "{error}"
        );
        let layer = SignatureLayer {
            media_type: SIMPLE_SIGNING.into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 1 << 30,
            annotations: None,
        };
        assert!(layer.descriptor("x.sig").is_err());
    }

    #[test]
    fn der_lengths_are_bounded() {
        assert_eq!(
            der_element(&[0x30, 0x02, 1, 2, 9], 0x30),
            Some((&[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(
            der_element(&[0x30, 0x81, 0x01, 7], 0x30),
            Some((&[7u8][..], &[][..]))
        );
        assert_eq!(der_element(&[0x30, 0x05, 1], 0x30), None);
        assert_eq!(
            der_element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], 0x30),
            None
        );
        assert_eq!(der_element(&[0x02, 0x00], 0x30), None);
    }
}
