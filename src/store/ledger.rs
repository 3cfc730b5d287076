//! The audit ledger: an append-only, tamper-evident list of every sealed
//! Parquet file (`schemas/AUDIT.md`).
//!
//! ```text
//! DATA/_ledger/entries/<index, 12 digits>.json       one entry per sealed file (create-new)
//! DATA/_ledger/checkpoints/<size, 12 digits>.txt     signed tree heads (C2SP signed note)
//! DATA/_ledger/lock                                  serialises writers (serve, report)
//! DATA/_ledger/head.json                             size and compact tree (derived, rebuilt if off)
//! DATA/_state/audit.key                              Ed25519 seed (hex), made on first use
//! ```
//!
//! An entry's bytes are its JSON exactly as written (fields in a fixed
//! order, no whitespace); they are the leaves of an RFC 6962 Merkle tree.
//! After each change the writer signs a checkpoint of the whole tree
//! (origin, size, root) with Ed25519, in the C2SP `tlog-checkpoint` format.
//! Files are written first (their footer names their ledger index and row
//! root), then the commit manifest (which carries the entries, so a crash
//! before they are written is completed on the next start), then the
//! entries, then the checkpoint.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical::{leaf_hash, CompactTree, Hash};
use crate::layout::{CHECKPOINTS_DIR, ENTRIES_DIR, HEAD_FILE, LEDGER_DIR, LOCK_FILE};

/// C2SP signed notes: the signature type byte of Ed25519 keys.
const ED25519_TYPE: u8 = 0x01;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ledger: {0}")]
    Bad(String),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

/// The tiles are the ledger's: their failures are the ledger's, said as
/// they were before the tiles had an error type of their own.
impl From<super::tiles::TilesError> for LedgerError {
    fn from(e: super::tiles::TilesError) -> LedgerError {
        match e {
            super::tiles::TilesError::Io { path, source } => LedgerError::Io { path, source },
            super::tiles::TilesError::Bad(why) => LedgerError::Bad(why),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One sealed file, as the ledger records it. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub index: u64,
    pub table: String,
    /// Relative to DATA, `/`-separated.
    pub path: String,
    pub size: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub rows: u64,
    /// RFC 6962 root over the rows' canonical hashes, hex.
    pub row_root: String,
    /// Earliest and latest time of the table's time column (RFC 3339).
    pub min_time: Option<String>,
    pub max_time: Option<String>,
    pub min_receipt_seq: Option<u64>,
    pub max_receipt_seq: Option<u64>,
    pub schema_version: String,
    pub writer: String,
    pub sealed_at: String,
    /// The commit that sealed it (None for reports).
    pub commit: Option<u64>,
}

impl LedgerEntry {
    /// The entry's bytes: the leaf of the ledger tree.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Path of entry `index` relative to the ledger directory.
pub(crate) fn entry_name(index: u64) -> String {
    format!("{index:012}.json")
}

/// The ledger of one data directory.
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn open(data: &Path) -> Result<Ledger, LedgerError> {
        let dir = data.join(LEDGER_DIR);
        for d in [dir.join(ENTRIES_DIR), dir.join(CHECKPOINTS_DIR)] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(Ledger { dir })
    }

    /// Blocks until this process is the only ledger writer, and loads the
    /// head: the tree so far, in O(log n) (rebuilt from the entries when
    /// the head file is missing or does not fit them).
    pub fn writer(&self) -> Result<LedgerWriter<'_>, LedgerError> {
        let path = self.dir.join(LOCK_FILE);
        let file = super::lock_exclusive(&path).map_err(io_err(&path))?;
        let tree = match self.read_head() {
            Some(t) if self.fits(&t) => t,
            _ => self.rebuild()?,
        };
        Ok(LedgerWriter {
            ledger: self,
            _lock: file,
            tree,
        })
    }

    fn entry_path(&self, index: u64) -> PathBuf {
        self.dir.join(ENTRIES_DIR).join(entry_name(index))
    }

    fn read_head(&self) -> Option<CompactTree> {
        let head: Head = serde_json::from_slice(&fs::read(self.dir.join(HEAD_FILE)).ok()?).ok()?;
        let stack = head
            .stack
            .iter()
            .map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect::<Option<Vec<Hash>>>()?;
        (stack.len() == head.size.count_ones() as usize).then_some(CompactTree {
            size: head.size,
            stack,
        })
    }

    /// The head fits the entries when its last entry exists and the next
    /// one does not (writers update it under the lock after appending).
    fn fits(&self, t: &CompactTree) -> bool {
        !self.entry_path(t.size).exists() && (t.size == 0 || self.entry_path(t.size - 1).exists())
    }

    /// The tree from every entry file (O(n): only when the head is off).
    fn rebuild(&self) -> Result<CompactTree, LedgerError> {
        let mut t = CompactTree::default();
        for i in self.entry_indices()? {
            if i != t.size {
                return Err(LedgerError::Bad(format!(
                    "entry {} is missing: the ledger has a hole",
                    t.size
                )));
            }
            t.push(leaf_hash(&self.read_entry(i)?));
        }
        Ok(t)
    }

    /// Indices of the entry files present, sorted.
    pub fn entry_indices(&self) -> Result<Vec<u64>, LedgerError> {
        let dir = self.dir.join(ENTRIES_DIR);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The bytes of entry `index`.
    pub(crate) fn read_entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        let path = self.entry_path(index);
        fs::read(&path).map_err(io_err(&path))
    }

    /// The checkpoint files present, by tree size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
        let dir = self.dir.join(CHECKPOINTS_DIR);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let p = e.map_err(io_err(&dir))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(n) = name
                .strip_suffix(".txt")
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push((n, p));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// `_ledger/head.json`: derived state, so that a writer need not read every
/// entry. Never trusted by a verifier.
#[derive(Serialize, Deserialize)]
struct Head {
    size: u64,
    stack: Vec<String>,
}

/// The only ledger writer while it lives (it holds the lock).
pub struct LedgerWriter<'a> {
    ledger: &'a Ledger,
    _lock: File,
    tree: CompactTree,
}

impl LedgerWriter<'_> {
    /// The index the next entry takes.
    pub fn next_index(&self) -> u64 {
        self.tree.size
    }

    /// Appends an entry with create-new semantics. An entry already there
    /// with the same bytes is accepted (a recovery repeating itself), with
    /// other bytes it is an error and never overwritten; an index beyond
    /// the next one would leave a hole and is refused.
    pub fn append(&mut self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let bytes = entry.to_bytes();
        let path = self.ledger.entry_path(entry.index);
        if entry.index < self.tree.size {
            return match fs::read(&path) {
                Ok(existing) if existing == bytes => Ok(()),
                _ => Err(LedgerError::Bad(format!(
                    "entry {} exists with other contents: not overwritten",
                    entry.index
                ))),
            };
        }
        if entry.index > self.tree.size {
            return Err(LedgerError::Bad(format!(
                "entry {} would leave a hole after entry {}",
                entry.index,
                self.tree.size.wrapping_sub(1)
            )));
        }
        create_new_in(&path, &bytes)?;
        self.tree.push(leaf_hash(&bytes));
        Ok(())
    }

    /// Signs a checkpoint of the whole ledger (unless one of its size is
    /// there) and records the head.
    pub fn checkpoint(&self, key: &AuditKey) -> Result<(), LedgerError> {
        let n = self.tree.size;
        let path = self
            .ledger
            .dir
            .join(CHECKPOINTS_DIR)
            .join(format!("{n:012}.txt"));
        let note = match fs::read_to_string(&path) {
            Ok(existing) => existing,
            Err(_) => {
                let note = key.sign_checkpoint(n, &self.tree.root());
                create_new(&path, note.as_bytes())?;
                note
            }
        };
        // The same tree as a C2SP tlog-tiles static log. Derived: a failure
        // is logged and mended by the next checkpoint (it starts from the
        // size the tiles last published).
        if let Err(e) =
            super::tiles::publish(&self.ledger.dir, n, &note, &|i| self.ledger.read_entry(i))
        {
            tracing::warn!(error = %e, size = n, "ledger: tlog tiles not written; the next checkpoint retries");
        }
        let head = Head {
            size: n,
            stack: self.tree.stack.iter().map(hex::encode).collect(),
        };
        let head_path = self.ledger.dir.join(HEAD_FILE);
        let tmp = head_path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(&head).unwrap_or_default()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &head_path).map_err(io_err(&head_path))
    }
}

/// Writes a file that must not exist yet: a synced temporary file, then a
/// hard link to the final name (fails if it exists: two writers cannot
/// both win), then the directory synced.
fn create_new(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    create_new_in(path, bytes)?;
    sync_parent(path)
}

/// [`create_new`] without syncing the directory: for a batch of entries,
/// whose directory is synced once by the checkpoint that follows them.
fn create_new_in(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(io_err(path))
}

fn sync_parent(path: &Path) -> Result<(), LedgerError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// The Ed25519 key that signs checkpoints, and the log's name.
pub struct AuditKey {
    signing: SigningKey,
    /// Key name and checkpoint origin: `gapless/<16 hex digits>`.
    pub name: String,
}

impl AuditKey {
    /// Loads `DATA/_state/audit.key` (or `configured`), creating it on
    /// first use: only in the default place (a configured key that is
    /// missing is an error, not a new key), and only for a ledger that has
    /// no checkpoint yet. A ledger signed by a key kept elsewhere never
    /// gets a second key beside its data: a command run without that key
    /// is refused, naming the flag.
    pub fn load_or_create(data: &Path, configured: Option<&Path>) -> Result<AuditKey, LedgerError> {
        let path = key_path(data, configured);
        match fs::read_to_string(&path) {
            Ok(text) => AuditKey::from_hex(text.trim())
                .map_err(|e| LedgerError::Bad(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && configured.is_none() => {
                if has_checkpoint(data) {
                    return Err(LedgerError::Bad(format!(
                        "{} is signed by a key that is not in {}: give its file (--audit-key FILE, \
                         or audit_key in --config); a new key would sign checkpoints no auditor trusts",
                        data.join(LEDGER_DIR).display(),
                        path.display()
                    )));
                }
                match AuditKey::generate(&path) {
                    Ok(_) => {}
                    // Another writer made it first: use theirs.
                    Err(_) if path.exists() => {}
                    Err(e) => return Err(e),
                }
                AuditKey::load_or_create(data, configured)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Makes a new random key in `path` (which must not exist), readable
    /// by its owner only from the moment it exists ([`create_secret`]).
    pub(crate) fn generate(path: &Path) -> Result<AuditKey, LedgerError> {
        let mut seed = [0u8; 32];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(io_err(Path::new("/dev/urandom")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let hex_seed = hex::encode(seed);
        create_secret(path, format!("{hex_seed}\n").as_bytes())?;
        AuditKey::from_hex(&hex_seed).map_err(|e| LedgerError::Bad(e.to_string()))
    }

    pub fn from_hex(seed_hex: &str) -> Result<AuditKey, NoteError> {
        let seed: [u8; 32] = hex::decode(seed_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("not a 32-byte hex Ed25519 seed")?;
        let signing = SigningKey::from_bytes(&seed);
        let id = Sha256::digest(signing.verifying_key().as_bytes());
        Ok(AuditKey {
            name: format!("gapless/{}", hex::encode(&id[..8])),
            signing,
        })
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.signing.verifying_key(),
        }
    }

    /// A C2SP checkpoint of a tree of `size` leaves with root `root`.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        let body = format!("{}\n{size}\n{}\n", self.name, B64.encode(root));
        let sig = self.signing.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.signing.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// Whether `DATA/_ledger` holds a signed checkpoint.
fn has_checkpoint(data: &Path) -> bool {
    fs::read_dir(data.join(LEDGER_DIR).join(CHECKPOINTS_DIR)).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".txt"))))
    })
}

/// Where the signing key is: `configured`, else `DATA/_state/audit.key`.
pub(crate) fn key_path(data: &Path, configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_owned)
        .unwrap_or_else(|| crate::layout::default_audit_key(data))
}

/// `serve` refuses a signing key inside the data directory unless told
/// (`--audit-key-in-data`): whoever can write the data could then re-sign
/// it, so the ledger would prove nothing against them.
pub(crate) fn check_key_outside(
    data: &Path,
    configured: Option<&Path>,
    allowed: bool,
) -> Result<(), LedgerError> {
    let key = key_path(data, configured);
    if allowed || !is_inside(data, &key) {
        return Ok(());
    }
    Err(LedgerError::Bad(format!(
        "the audit signing key {} is inside the data directory {}: whoever can write the data could re-sign it. \
         Keep the key elsewhere (make one with `gapless audit keygen --out FILE`, then `--audit-key FILE`), \
         or accept this with --audit-key-in-data (demos, tests)",
        key.display(),
        data.display()
    )))
}

/// Whether `path` (which need not exist) lies under `dir`, symlinks resolved.
fn is_inside(dir: &Path, path: &Path) -> bool {
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Resolve the longest existing ancestor, keep the rest as written.
        let mut rest = Vec::new();
        let mut cur = p.as_path();
        loop {
            if let Ok(c) = cur.canonicalize() {
                return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
            }
            match (cur.parent(), cur.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    cur = parent;
                }
                _ => return p.clone(),
            }
        }
    };
    abs(path).starts_with(abs(dir))
}

/// Writes a secret that must not exist yet, with mode 0600 from the
/// moment it exists (its bytes are never readable by others, not even for
/// a moment): [`crate::layout::create_new_durably`].
pub(crate) fn create_secret(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    Ok(crate::layout::create_new_durably(path, bytes, 0o600)?)
}

/// The 4-byte key ID of a C2SP note verifier key:
/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4]`.
fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    note_key_id(name, ED25519_TYPE, key)
}

/// A C2SP signed-note key id: the first 4 bytes of SHA-256(name ‖ LF ‖
/// type ‖ key), for the log's keys (type 0x01) and witnesses' (0x04).
pub(crate) fn note_key_id(name: &str, key_type: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([key_type]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// `<name>+<key id hex>+<base64(type ‖ key)>`, the C2SP verifier key form.
pub(crate) fn encode_note_key(name: &str, key_type: u8, key: &VerifyingKey) -> String {
    let mut raw = vec![key_type];
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(note_key_id(name, key_type, key)),
        B64.encode(raw)
    )
}

/// A key or a signed note that does not read or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not of the form, or a part does not decode: why.
    #[error("{0}")]
    Malformed(String),
    /// A signature by the key is there but does not verify.
    #[error("signature does not verify: the checkpoint was altered or signed by another key")]
    BadSignature,
    /// No signature line by the key.
    #[error("no signature by {0}")]
    Unsigned(String),
}

impl From<&str> for NoteError {
    fn from(why: &str) -> NoteError {
        NoteError::Malformed(why.to_owned())
    }
}

impl From<String> for NoteError {
    fn from(why: String) -> NoteError {
        NoteError::Malformed(why)
    }
}

/// Parses a C2SP verifier key of `key_type` (`what` names it in errors):
/// its name, and the key whose id it carries.
pub(crate) fn parse_note_key(
    text: &str,
    key_type: u8,
    what: &str,
) -> Result<(String, VerifyingKey), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(k)) if !n.is_empty() => (n, i, k),
        _ => return Err(format!("a {what} is <name>+<key id hex>+<base64 key>").into()),
    };
    let raw = B64.decode(key).map_err(|e| format!("{what}: {e}"))?;
    if raw.len() != 33 || raw[0] != key_type {
        return Err(format!("{what}: not an Ed25519 key of type 0x{key_type:02x}").into());
    }
    let bytes: [u8; 32] = raw[1..].try_into().map_err(|_| "key length")?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))?;
    if hex::encode(note_key_id(name, key_type, &key)) != id {
        return Err(format!("{what}: key id does not match the name and key").into());
    }
    Ok((name.to_owned(), key))
}

/// A public key in C2SP note verifier form: `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    pub name: String,
    key: VerifyingKey,
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let (name, key) = parse_note_key(text, ED25519_TYPE, "verifier key")?;
        Ok(NoteVerifier { name, key })
    }

    pub fn encode(&self) -> String {
        encode_note_key(&self.name, ED25519_TYPE, &self.key)
    }

    /// Verifies a checkpoint note: its signature by this key over the body,
    /// and the body's form (origin, size, base64 root).
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or("not a signed note: no blank line before the signatures")?;
        let body = format!("{body}\n");
        let mut found = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(format!("malformed signature line {line:?}").into());
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(format!("malformed signature line {line:?}").into());
            };
            if name != self.name {
                continue;
            }
            let blob = B64.decode(blob).map_err(|e| format!("signature: {e}"))?;
            if blob.len() != 68 || blob[..4] != key_id(&self.name, &self.key) {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|e| format!("signature: {e}"))?;
            self.key
                .verify(body.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature)?;
            found = true;
        }
        if !found {
            return Err(NoteError::Unsigned(self.name.clone()));
        }
        let mut lines = body.lines();
        let origin = lines.next().unwrap_or("").to_owned();
        let size = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("checkpoint: bad tree size")?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or("checkpoint: bad root hash")?;
        if origin != self.name {
            return Err(format!("checkpoint origin {origin:?} is not {:?}", self.name).into());
        }
        Ok(Checkpoint { origin, size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_sign_and_verify_in_c2sp_form() {
        let key = AuditKey::from_hex(&"07".repeat(32)).unwrap();
        let root = leaf_hash(b"x");
        let note = key.sign_checkpoint(3, &root);
        let mut lines = note.lines();
        assert_eq!(lines.next(), Some(key.name.as_str()));
        assert_eq!(lines.next(), Some("3"));
        assert_eq!(lines.next(), Some(B64.encode(root).as_str()));
        assert_eq!(lines.next(), Some(""));
        assert!(lines
            .next()
            .unwrap()
            .starts_with(&format!("\u{2014} {} ", key.name)));
        let v = NoteVerifier::parse(&key.verifier().encode()).unwrap();
        assert_eq!(
            v.verify(&note).unwrap(),
            Checkpoint {
                origin: key.name.clone(),
                size: 3,
                root
            }
        );
        // Altered body: the signature fails.
        let altered = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(v.verify(&altered).unwrap_err(), NoteError::BadSignature);
        // Another key: no signature by it.
        let other = AuditKey::from_hex(&"08".repeat(32)).unwrap().verifier();
        assert!(other.verify(&note).is_err());
        assert!(NoteVerifier::parse("nope").is_err());
    }

    /// Issue 18 (6a): the key was written with the default mode (0644
    /// under the usual umask), then chmodded to 0600, so its bytes were
    /// readable by anyone for a moment (the whole fsync, in the temporary
    /// file). A watcher that stats every file of the directory while keys
    /// are made sees no file that others may read.
    #[test]
    fn the_key_file_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let done = AtomicBool::new(false);
        let (seen, readable) = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let (mut seen, mut readable) = (0u64, std::collections::BTreeSet::new());
                while !done.load(Ordering::Relaxed) {
                    for e in fs::read_dir(&dir).unwrap().flatten() {
                        if let Ok(m) = e.metadata() {
                            seen += 1;
                            if m.permissions().mode() & 0o077 != 0 {
                                readable.insert(e.file_name());
                            }
                        }
                    }
                }
                (seen, readable)
            });
            for i in 0..20 {
                AuditKey::generate(&dir.join(format!("key-{i}"))).unwrap();
            }
            done.store(true, Ordering::Relaxed);
            watcher.join().unwrap()
        });
        assert!(seen > 0, "the watcher saw no file: the test proves nothing");
        assert!(readable.is_empty(), "readable by others: {readable:?}");
        // And a key is made once: a second generate does not replace it.
        let first = fs::read(dir.join("key-0")).unwrap();
        assert!(AuditKey::generate(&dir.join("key-0")).is_err());
        assert_eq!(fs::read(dir.join("key-0")).unwrap(), first);
    }

    /// `serve` refuses a key inside the data directory unless allowed.
    #[test]
    fn a_key_inside_the_data_directory_is_refused_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let err = check_key_outside(&data, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside the data directory"), "{err}");
        assert!(check_key_outside(&data, None, true).is_ok());
        // Configured, but still inside (through `..` and a missing dir).
        let sneaky = data.join("x/../_keys/k");
        assert!(check_key_outside(&data, Some(&sneaky), false).is_err());
        // Beside the data directory: fine.
        let outside = tmp.path().join("keys/audit.key");
        assert!(check_key_outside(&data, Some(&outside), false).is_ok());
        // A symlink into the data directory is inside.
        std::os::unix::fs::symlink(&data, tmp.path().join("link")).unwrap();
        let linked = tmp.path().join("link/audit.key");
        assert!(check_key_outside(&data, Some(&linked), false).is_err());
    }

    #[test]
    fn entries_are_created_once_and_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(tmp.path()).unwrap();
        let mut e = LedgerEntry {
            index: 0,
            table: "readings".into(),
            path: "readings/date=2022-07-25/part-0000000001.parquet".into(),
            size: 10,
            sha256: "00".repeat(32),
            rows: 1,
            row_root: "11".repeat(32),
            min_time: None,
            max_time: None,
            min_receipt_seq: Some(1),
            max_receipt_seq: Some(1),
            schema_version: "2".into(),
            writer: "test".into(),
            sealed_at: "2022-07-25T00:00:00Z".into(),
            commit: Some(1),
        };
        let key = AuditKey::load_or_create(tmp.path(), None).unwrap();
        let again = AuditKey::load_or_create(tmp.path(), None).unwrap();
        assert_eq!(key.name, again.name, "the key is made once, then reused");
        {
            let mut w = ledger.writer().unwrap();
            w.append(&e).unwrap();
            w.append(&e).unwrap(); // the same again: a recovery repeating itself
            e.rows = 2;
            assert!(w
                .append(&e)
                .unwrap_err()
                .to_string()
                .contains("not overwritten"));
            e.index = 5;
            assert!(w.append(&e).unwrap_err().to_string().contains("hole"));
            w.checkpoint(&key).unwrap();
        }
        assert_eq!(ledger.checkpoints().unwrap().len(), 1);
        // Signed now: with its key gone (kept elsewhere, say), no second
        // key is made beside the data.
        let key_file = tmp
            .path()
            .join("_state")
            .join(crate::layout::AUDIT_KEY_FILE);
        fs::remove_file(&key_file).unwrap();
        let e = AuditKey::load_or_create(tmp.path(), None).err().unwrap();
        assert!(e.to_string().contains("--audit-key"), "{e}");
        assert!(!key_file.exists());
        // The head is derived: without it, or with a wrong one, the writer
        // rebuilds the tree from the entries.
        let head = |l: &Ledger| {
            let w = l.writer().unwrap();
            (w.tree.size, w.tree.root())
        };
        let before = head(&ledger);
        assert_eq!(before.0, 1);
        fs::write(
            tmp.path().join("_ledger/head.json"),
            r#"{"size":7,"stack":[]}"#,
        )
        .unwrap();
        assert_eq!(head(&ledger), before);
        fs::remove_file(tmp.path().join("_ledger/head.json")).unwrap();
        assert_eq!(head(&ledger), before);
    }
}
