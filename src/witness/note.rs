//! The signed-note parts a witness needs: C2SP `tlog-cosignature`
//! (Ed25519, `cosignature/v1`, signature type 0x04) and the split of a
//! C2SP `signed-note` into its body and signature lines.
//!
//! ```text
//! signed message   cosignature/v1\n time <POSIX seconds>\n <checkpoint body>
//! signature line   — <name> base64(key id ‖ u64 BE timestamp ‖ Ed25519 signature)\n
//! key id           SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[..4]
//! verifier key     <name>+<key id hex>+base64(0x04 ‖ public key)
//! ```

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::store::ledger::{AuditKey, LedgerError};

/// Signature type of timestamped Ed25519 cosignatures (`tlog-cosignature`).
const COSIGNATURE_TYPE: u8 = 0x04;
/// The domain-separation header line of a v1 cosignature.
const HEADER: &str = "cosignature/v1\n";

/// A note split in two: its body (up to and including the newline before
/// the blank line) and its signature lines (after the blank line).
pub fn split_note(note: &str) -> Option<(&str, &str)> {
    let i = note.find("\n\n")?;
    Some((&note[..=i], &note[i + 2..]))
}

/// The first three lines of a checkpoint body: origin, size, root.
pub(crate) fn parse_body(body: &str) -> Option<(&str, u64, [u8; 32])> {
    let mut lines = body.split('\n');
    let origin = lines.next().filter(|o| !o.is_empty())?;
    let size = lines.next()?;
    if size.is_empty() || (size.len() > 1 && size.starts_with('0')) {
        return None;
    }
    let size = size.parse().ok()?;
    let root = B64.decode(lines.next()?).ok()?.try_into().ok()?;
    Some((origin, size, root))
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    crate::store::ledger::note_key_id(name, COSIGNATURE_TYPE, key)
}

fn message(body: &str, time: u64) -> String {
    format!("{HEADER}time {time}\n{body}")
}

/// A witness's signing key and name.
pub struct Cosigner {
    signing: SigningKey,
    pub name: String,
}

impl Cosigner {
    /// Loads the seed (64 hex digits) in `path`, making a new one (mode
    /// 0600) when there is none. The name defaults to
    /// `witness/<16 hex digits of SHA-256 of the public key>`.
    pub fn load_or_create(path: &Path, name: Option<&str>) -> Result<Cosigner, LedgerError> {
        if !path.exists() {
            // The same random seed an audit key is made of.
            AuditKey::generate(path)?;
        }
        let text = fs::read_to_string(path).map_err(|source| LedgerError::Io {
            path: path.to_owned(),
            source,
        })?;
        Cosigner::from_hex(text.trim(), name)
            .map_err(|e| LedgerError::Bad(format!("{}: {e}", path.display())))
    }

    pub fn from_hex(seed_hex: &str, name: Option<&str>) -> Result<Cosigner, String> {
        let seed: [u8; 32] = hex::decode(seed_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("not a 32-byte hex Ed25519 seed")?;
        let signing = SigningKey::from_bytes(&seed);
        let name = match name {
            Some(n) => {
                if n.is_empty() || n.contains(char::is_whitespace) || n.contains('+') {
                    return Err(format!(
                        "witness name {n:?}: must be non-empty, without spaces or '+'"
                    ));
                }
                n.to_owned()
            }
            None => format!(
                "witness/{}",
                hex::encode(&Sha256::digest(signing.verifying_key().as_bytes())[..8])
            ),
        };
        Ok(Cosigner { signing, name })
    }

    pub fn verifier(&self) -> CosignerKey {
        CosignerKey {
            name: self.name.clone(),
            key: self.signing.verifying_key(),
        }
    }

    /// The cosignature line (with its newline) over a checkpoint `body`
    /// at `time` (POSIX seconds).
    pub fn cosign(&self, body: &str, time: u64) -> String {
        let sig = self.signing.sign(message(body, time).as_bytes());
        let mut blob = key_id(&self.name, &self.signing.verifying_key()).to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// A witness's public key, as a C2SP verifier key of type 0x04.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    pub name: String,
    key: VerifyingKey,
}

/// What the signature lines of a note say for one witness key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cosigned {
    /// A valid cosignature, made at this time (POSIX seconds).
    Valid(u64),
    /// No line with this key's name and key id.
    Absent,
    /// A line with this key's name and id that does not verify: forged,
    /// or the checkpoint was altered after it was cosigned.
    Invalid(String),
}

impl CosignerKey {
    pub fn parse(text: &str) -> Result<CosignerKey, String> {
        let (name, key) =
            crate::store::ledger::parse_note_key(text, COSIGNATURE_TYPE, "witness key")
                .map_err(|e| e.to_string())?;
        Ok(CosignerKey { name, key })
    }

    pub fn encode(&self) -> String {
        crate::store::ledger::encode_note_key(&self.name, COSIGNATURE_TYPE, &self.key)
    }

    /// The key id, 8 hex digits (names the cosignature files).
    pub(crate) fn id_hex(&self) -> String {
        hex::encode(key_id(&self.name, &self.key))
    }

    /// Checks this key's cosignatures among `lines` (signature lines) over
    /// a checkpoint `body`. Lines of other keys are ignored.
    pub fn check(&self, body: &str, lines: &str) -> Cosigned {
        let id = key_id(&self.name, &self.key);
        let mut result = Cosigned::Absent;
        for line in lines.lines() {
            let Some((name, blob)) = line
                .strip_prefix("\u{2014} ")
                .and_then(|r| r.split_once(' '))
            else {
                continue;
            };
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(blob) else {
                continue;
            };
            if blob.len() != 4 + 8 + 64 || blob[..4] != id {
                continue;
            }
            let time = u64::from_be_bytes(blob[4..12].try_into().unwrap_or_default());
            let verified = ed25519_dalek::Signature::from_slice(&blob[12..])
                .ok()
                .filter(|sig| self.key.verify(message(body, time).as_bytes(), sig).is_ok());
            if time > i64::MAX as u64 {
                return Cosigned::Invalid(format!("timestamp {time} beyond 2^63-1"));
            }
            match verified {
                Some(_) => result = Cosigned::Valid(time),
                None => {
                    return Cosigned::Invalid(format!(
                        "the cosignature by {} does not verify: forged, or the checkpoint was altered after it was cosigned",
                        self.name
                    ))
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cosignature/v1 message and line, byte for byte (the spec's
    /// example body), and the checks a verifier makes.
    #[test]
    fn cosignatures_are_c2sp_cosignature_v1() {
        let w = Cosigner::from_hex(&"09".repeat(32), Some("witness.example/w1")).unwrap();
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            message(body, 1679315147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        let line = w.cosign(body, 1679315147);
        assert!(line.starts_with("\u{2014} witness.example/w1 "));
        let blob = B64
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(blob.len(), 76);
        assert_eq!(&blob[4..12], &1679315147u64.to_be_bytes());
        // The key id commits to the type byte 0x04, not the log's 0x01.
        let k = CosignerKey::parse(&w.verifier().encode()).unwrap();
        assert_eq!(k, w.verifier());
        assert!(
            w.verifier().encode().contains("+B"),
            "base64(0x04 ‖ key) starts with B"
        );
        assert_eq!(k.check(body, &line), Cosigned::Valid(1679315147));
        // Another body: invalid, not absent.
        let other = body.replace("20852163", "20852164");
        assert!(matches!(k.check(&other, &line), Cosigned::Invalid(_)));
        // A forged line: right name and id, another key's signature.
        let forger = Cosigner::from_hex(&"0a".repeat(32), Some("witness.example/w1")).unwrap();
        let forged = forger.cosign(body, 1679315147);
        let mut fb = B64
            .decode(forged.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        fb[..4].copy_from_slice(&blob[..4]);
        let forged = format!("\u{2014} witness.example/w1 {}\n", B64.encode(fb));
        assert!(matches!(k.check(body, &forged), Cosigned::Invalid(_)));
        // A line of another witness is ignored.
        assert_eq!(k.check(body, &forger.cosign(body, 1)), Cosigned::Absent);
        // A log key (type 0x01) is not a witness key.
        let log = AuditKey::from_hex(&"07".repeat(32))
            .unwrap()
            .verifier()
            .encode();
        assert!(CosignerKey::parse(&log).is_err());
    }

    #[test]
    fn notes_split_into_body_and_signatures() {
        let (body, sigs) = split_note("o\n1\nAAAA\n\n\u{2014} o x\n").unwrap();
        assert_eq!(body, "o\n1\nAAAA\n");
        assert_eq!(sigs, "\u{2014} o x\n");
        assert!(split_note("o\n1\n").is_none());
        assert!(parse_body("o\n01\nAAAA\n").is_none(), "no leading zeroes");
    }
}
