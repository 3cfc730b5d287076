//! Proofs an auditor can check without the data: that one reading is in a
//! signed ledger (`audit prove` / `audit check-proof`), and that the ledger
//! today extends an earlier checkpoint (`audit consistency`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::layout::{CHECKPOINTS_DIR, ENTRIES_DIR, LEDGER_DIR};
use crate::store::canonical::{
    consistency_path, encode_row, inclusion_path, leaf_hash, merkle_root, root_from_path,
    row_hashes, verify_consistency, Hash,
};
use crate::store::ledger::{entry_name, Checkpoint, LedgerEntry, NoteVerifier};
use crate::store::tables::READINGS;

pub const PROOF_FORMAT: &str = "gapless-inclusion-proof/1";

/// Why a proof could not be made, or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// A file of the ledger could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file is not what the ledger says it is: an entry that is not
    /// JSON, a Parquet file that does not decode or hash.
    #[error("{path}: {why}")]
    Malformed { path: String, why: String },
    /// What was to be shown does not hold (or the proof is not one), and
    /// why: a changed row, entry or tree, a reading not in the ledger, a
    /// checkpoint no key signed.
    #[error("{0}")]
    DoesNotHold(String),
    /// The data directory's own key could not be loaded or made.
    #[error(transparent)]
    Key(crate::store::ledger::LedgerError),
}

impl From<String> for ProofError {
    fn from(why: String) -> ProofError {
        ProofError::DoesNotHold(why)
    }
}

impl From<&str> for ProofError {
    fn from(why: &str) -> ProofError {
        ProofError::DoesNotHold(why.to_string())
    }
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ProofError + '_ {
    move |source| ProofError::Read {
        path: path.to_owned(),
        source,
    }
}

/// An inclusion proof of one row (`schemas/AUDIT.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionProof {
    pub format: String,
    pub table: String,
    /// Column names and canonical types, in order.
    pub columns: Vec<(String, String)>,
    /// The canonical row, hex.
    pub row: String,
    pub row_index: u64,
    pub rows: u64,
    /// Audit path from the row to the file's row root, hex.
    pub row_path: Vec<String>,
    /// The ledger entry exactly as stored.
    pub entry: String,
    pub entry_index: u64,
    pub tree_size: u64,
    /// Audit path from the entry to the checkpoint's root, hex.
    pub entry_path: Vec<String>,
    /// The signed checkpoint.
    pub checkpoint: String,
}

fn hx(h: &Hash) -> String {
    hex::encode(h)
}

fn unhex(s: &str) -> Result<Hash, ProofError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{s:?} is not a 32-byte hex hash").into())
}

fn ledger_leaves(data: &Path, n: u64) -> Result<Vec<Hash>, ProofError> {
    (0..n)
        .map(|i| {
            let p = data.join(LEDGER_DIR).join(ENTRIES_DIR).join(entry_name(i));
            fs::read(&p).map(|b| leaf_hash(&b)).map_err(read_err(&p))
        })
        .collect()
}

/// The newest checkpoint that verifies with `key`, and its text.
fn newest_checkpoint(data: &Path, key: &NoteVerifier) -> Result<(Checkpoint, String), ProofError> {
    let dir = data.join(LEDGER_DIR).join(CHECKPOINTS_DIR);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(read_err(&dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    for p in names.iter().rev() {
        let text = fs::read_to_string(p).map_err(read_err(p))?;
        if let Ok(cp) = key.verify(&text) {
            return Ok((cp, text));
        }
    }
    Err("no checkpoint signed by the key".into())
}

fn type_name(t: &arrow_schema::DataType) -> String {
    use arrow_schema::DataType as D;
    match t {
        D::Boolean => "BOOLEAN".into(),
        D::Int64 => "INT64".into(),
        D::Timestamp(_, _) => "TIMESTAMP".into(),
        D::UInt8 => "UINT8".into(),
        D::UInt32 => "UINT32".into(),
        D::UInt64 => "UINT64".into(),
        D::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        D::Utf8 => "STRING".into(),
        D::Binary => "BINARY".into(),
        other => format!("{other}"),
    }
}

/// Builds the inclusion proof of the reading of `meter` at `ts` (µs).
pub fn prove(
    data: &Path,
    meter: &str,
    ts: i64,
    key: &NoteVerifier,
) -> Result<InclusionProof, ProofError> {
    let (cp, text) = newest_checkpoint(data, key)?;
    for i in 0..cp.size {
        let path = data.join(LEDGER_DIR).join(ENTRIES_DIR).join(entry_name(i));
        let bytes = fs::read(&path).map_err(read_err(&path))?;
        let e: LedgerEntry =
            serde_json::from_slice(&bytes).map_err(|err| ProofError::Malformed {
                path: path.display().to_string(),
                why: err.to_string(),
            })?;
        if e.table != READINGS {
            continue;
        }
        if e.min_time.as_deref().is_some_and(|m| ts_lt(ts, m))
            || e.max_time.as_deref().is_some_and(|m| ts_gt(ts, m))
        {
            continue;
        }
        let file_path = data.join(&e.path);
        let file = fs::File::open(&file_path).map_err(read_err(&file_path))?;
        let malformed = |why: String| ProofError::Malformed {
            path: e.path.clone(),
            why,
        };
        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|err| malformed(err.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|err| malformed(err.to_string()))?;
        let mut hashes = Vec::new();
        let mut found = None;
        for b in &batches {
            let meters = b
                .column_by_name("meter_id")
                .map(|c| c.as_string::<i32>().clone());
            let times = b
                .column_by_name("ts")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned());
            if let (None, Some(m), Some(t)) = (found.as_ref(), meters, times) {
                if let Some(r) =
                    (0..b.num_rows()).find(|&r| m.value(r) == meter && t.value(r) == ts)
                {
                    let mut row = Vec::new();
                    encode_row(b, r, &mut row);
                    found = Some((hashes.len() + r, row, b.schema()));
                }
            }
            row_hashes(b, &mut hashes).map_err(|err| malformed(err.to_string()))?;
        }
        let Some((r, row, schema)) = found else {
            continue;
        };
        let leaves = ledger_leaves(data, cp.size)?;
        return Ok(InclusionProof {
            format: PROOF_FORMAT.into(),
            table: e.table.clone(),
            columns: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), type_name(f.data_type())))
                .collect(),
            row: hex::encode(row),
            row_index: r as u64,
            rows: hashes.len() as u64,
            row_path: inclusion_path(r, &hashes).iter().map(hx).collect(),
            entry: String::from_utf8_lossy(&bytes).into_owned(),
            entry_index: i,
            tree_size: cp.size,
            entry_path: inclusion_path(i as usize, &leaves).iter().map(hx).collect(),
            checkpoint: text,
        });
    }
    Err(format!(
        "no reading of meter {meter} at {} in the signed ledger",
        crate::time::format_micros(ts)
    )
    .into())
}

fn ts_lt(ts: i64, bound: &str) -> bool {
    crate::time::parse_rfc3339(bound).is_ok_and(|b| ts < b)
}

fn ts_gt(ts: i64, bound: &str) -> bool {
    crate::time::parse_rfc3339(bound).is_ok_and(|b| ts > b)
}

/// What a checked proof established.
#[derive(Debug, Clone)]
pub struct Proven {
    /// The row's columns as text.
    pub fields: Vec<(String, String)>,
    pub path: String,
    pub checkpoint: Checkpoint,
}

/// Checks a proof against a trusted key, without the data.
pub fn check(proof: &InclusionProof, key: &NoteVerifier) -> Result<Proven, ProofError> {
    if proof.format != PROOF_FORMAT {
        return Err(format!("unknown proof format {:?}", proof.format).into());
    }
    // A checkpoint that does not read or verify: the proof does not hold.
    let cp = key
        .verify(&proof.checkpoint)
        .map_err(|e| ProofError::DoesNotHold(e.to_string()))?;
    if cp.size != proof.tree_size {
        return Err(format!(
            "checkpoint signs {} entries, the proof says {}",
            cp.size, proof.tree_size
        )
        .into());
    }
    let entry: LedgerEntry =
        serde_json::from_str(&proof.entry).map_err(|e| format!("entry: {e}"))?;
    if entry.index != proof.entry_index || entry.rows != proof.rows {
        return Err("the entry does not match the proof's index or row count".into());
    }
    let row = hex::decode(&proof.row).map_err(|e| format!("row: {e}"))?;
    let row_path: Vec<Hash> = proof
        .row_path
        .iter()
        .map(|h| unhex(h))
        .collect::<Result<_, _>>()?;
    let row_root = root_from_path(proof.row_index, proof.rows, leaf_hash(&row), &row_path)
        .ok_or("the row path does not fit the file's size")?;
    if hx(&row_root) != entry.row_root {
        return Err("the row does not hash to the entry's row root: the row was changed".into());
    }
    let entry_path: Vec<Hash> = proof
        .entry_path
        .iter()
        .map(|h| unhex(h))
        .collect::<Result<_, _>>()?;
    let root = root_from_path(
        proof.entry_index,
        proof.tree_size,
        leaf_hash(proof.entry.as_bytes()),
        &entry_path,
    )
    .ok_or("the entry path does not fit the tree's size")?;
    if root != cp.root {
        return Err("the entry does not lead to the signed root: the entry was changed".into());
    }
    Ok(Proven {
        fields: decode_row(&row, &proof.columns)?,
        path: entry.path,
        checkpoint: cp,
    })
}

/// Decodes a canonical row back to text, by its column types.
fn decode_row(
    row: &[u8],
    columns: &[(String, String)],
) -> Result<Vec<(String, String)>, ProofError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = row
            .get(at..at + n)
            .ok_or("the row is shorter than its columns")?;
        at += n;
        Ok(s)
    };
    let mut out = Vec::new();
    for (name, t) in columns {
        if take(1)?[0] == 0 {
            out.push((name.clone(), "null".into()));
            continue;
        }
        let v = match t.as_str() {
            "BOOLEAN" => (take(1)?[0] == 1).to_string(),
            "INT64" => i64::from_be_bytes(take(8)?.try_into().map_err(|_| "int")?).to_string(),
            "TIMESTAMP" => crate::time::format_micros(i64::from_be_bytes(
                take(8)?.try_into().map_err(|_| "timestamp")?,
            )),
            "UINT8" | "UINT32" | "UINT64" => {
                u64::from_be_bytes(take(8)?.try_into().map_err(|_| "uint")?).to_string()
            }
            t if t.starts_with("DECIMAL") => crate::reading::format_scaled(i128::from_be_bytes(
                take(16)?.try_into().map_err(|_| "decimal")?,
            )),
            "STRING" | "BINARY" => {
                let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "length")?) as usize;
                let b = take(n)?;
                if t == "STRING" {
                    String::from_utf8_lossy(b).into_owned()
                } else {
                    hex::encode(b)
                }
            }
            other => return Err(format!("column {name}: unknown type {other}").into()),
        };
        out.push((name.clone(), v));
    }
    if at != row.len() {
        return Err("the row is longer than its columns".into());
    }
    Ok(out)
}

/// A consistency proof between an earlier checkpoint and the current one.
#[derive(Debug, Clone, Serialize)]
pub struct Consistency {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: String,
    pub new_root: String,
    pub proof: Vec<String>,
}

/// Proves that the ledger today extends the checkpoint `old` (nothing
/// removed or rewritten since), and checks the proof.
pub fn consistency(data: &Path, old: &str, key: &NoteVerifier) -> Result<Consistency, ProofError> {
    let old_cp = key
        .verify(old)
        .map_err(|e| format!("old checkpoint: {e}"))?;
    let (new_cp, _) = newest_checkpoint(data, key)?;
    if new_cp.size < old_cp.size {
        return Err(format!(
            "the ledger's newest checkpoint signs {} entries, fewer than the old one's {}: the log was truncated",
            new_cp.size, old_cp.size
        ).into());
    }
    let leaves = ledger_leaves(data, new_cp.size)?;
    if merkle_root(&leaves) != new_cp.root {
        return Err("the ledger's entries do not hash to its newest checkpoint".into());
    }
    let proof = consistency_path(old_cp.size as usize, &leaves);
    if !verify_consistency(old_cp.size, new_cp.size, &old_cp.root, &new_cp.root, &proof) {
        return Err(format!(
            "the ledger does not extend the old checkpoint: entries 0..{} were rewritten",
            old_cp.size
        )
        .into());
    }
    Ok(Consistency {
        old_size: old_cp.size,
        new_size: new_cp.size,
        old_root: hx(&old_cp.root),
        new_root: hx(&new_cp.root),
        proof: proof.iter().map(hx).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ledger_is_a_read_error_and_a_bad_proof_does_not_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let key = crate::store::ledger::AuditKey::from_hex(&"07".repeat(32))
            .unwrap()
            .verifier();
        let e = prove(tmp.path(), "m", 0, &key).unwrap_err();
        assert!(
            matches!(&e, ProofError::Read { path, .. } if path.ends_with("_ledger/checkpoints")),
            "{e}"
        );
        assert!(e.to_string().contains("_ledger/checkpoints"), "{e}");
        let mut proof: InclusionProof = serde_json::from_value(serde_json::json!({
            "format": "x", "table": "readings", "columns": [], "row": "", "row_index": 0,
            "rows": 0, "row_path": [], "entry": "", "entry_index": 0, "tree_size": 0,
            "entry_path": [], "checkpoint": ""
        }))
        .unwrap();
        let e = check(&proof, &key).unwrap_err();
        assert!(
            matches!(&e, ProofError::DoesNotHold(why) if why.contains("unknown proof format")),
            "{e}"
        );
        proof.format = PROOF_FORMAT.into();
        assert!(matches!(
            check(&proof, &key),
            Err(ProofError::DoesNotHold(_))
        ));
    }
}
