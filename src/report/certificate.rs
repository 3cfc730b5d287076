//! The outage certificate: one self-contained, printable HTML page per
//! window and registry group (building, property), for a property manager
//! or a tenant (`gapless report --format html`, `GET /api/v1/certificate`).
//!
//! Per meter register it says whether consumption across the outage is
//! exactly provable, only estimable, or lost ([`Verdict`]), with the
//! opening and closing readings; it draws the coverage picture; and it
//! names what it rests on: the signed ledger checkpoint, the sealed files
//! (paths and SHA-256 as the ledger records them), and the commands that
//! check them without trusting this page.
//!
//! Nothing here judges a meter: the rows are the report's
//! ([`window::evaluate`]) and the picture is the coverage's
//! ([`coverage::series_coverage`]), both from one scan of the sealed
//! readings. This file gathers them and the ledger facts; rendering is in
//! [`super::certificate_html`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::coverage::{self, Buckets, CoverageRow};
use super::{ReportError, ReportFilter, StoredReadings};
use crate::continuity::window::{self, MeterRow, Status, Summary, Window};
use crate::continuity::Context;
use crate::store::ledger::{Ledger, LedgerEntry, NoteVerifier};
use crate::time::parse_time;

/// Coverage columns of the picture (hourly for a one-day window, like
/// the dashboard's default).
pub(crate) const BUCKETS: u32 = 24;
/// Meter registers one document lists at most: beyond it, ask for one
/// group at a time.
pub(crate) const MAX_ROWS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The group asked for has no meter register in the window.
    #[error("no meter register of group {0:?} is in service in this window")]
    NoSuchGroup(String),
    #[error(
        "{rows} meter registers are too many for one document (at most {MAX_ROWS}): \
         ask for one group at a time"
    )]
    TooLarge { rows: usize },
    #[error("the ledger: {0}")]
    Ledger(String),
    /// The window is too short to draw (under a second).
    #[error("the window is too short for the coverage picture: {0}")]
    Window(super::coverage::BucketsError),
}

/// What consumption across the window is, for billing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Measured readings on both sides and a continuous register:
    /// consumption = closing − opening, to the decimal the meter sent.
    Provable,
    /// Readings on both sides, but the register is not continuous between
    /// them (replacement, reset, a late first reading) or was judged
    /// anomalous: the difference is a figure to check, not proof.
    Estimable,
    /// No measured reading on one side of the window: the meter's data
    /// cannot give the consumption (estimate from comparable periods).
    Lost,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Provable, Verdict::Estimable, Verdict::Lost];

    /// The report row's verdict.
    pub fn of(r: &MeterRow) -> Verdict {
        if r.opening.is_none() || r.closing.is_none() {
            Verdict::Lost
        } else if r.consumption.is_some() && r.consumption_exact && r.status != Status::Anomalous {
            Verdict::Provable
        } else {
            Verdict::Estimable
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Provable => "provable",
            Verdict::Estimable => "estimable",
            Verdict::Lost => "lost",
        }
    }
}

/// One meter register of a group: its report row and its coverage.
#[derive(Debug, Clone)]
pub struct CertifiedRow {
    pub row: MeterRow,
    pub coverage: CoverageRow,
    pub verdict: Verdict,
}

/// One group's certificate.
#[derive(Debug, Clone)]
pub struct GroupCertificate {
    /// The registry group; None for meters without one.
    pub group: Option<String>,
    /// Over every register of the group (of the medium asked for), like
    /// the report's summary: a status filter only shortens `rows`.
    pub summary: Summary,
    pub verdicts: [u64; 3],
    pub rows: Vec<CertifiedRow>,
    /// The sealed files that hold the group's readings from the earliest
    /// opening reading on, by ledger index.
    pub files: Vec<FileFact>,
}

/// A sealed file as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    /// None for a file written without the ledger.
    pub entry: Option<LedgerEntry>,
}

/// Whether the checkpoint's signature was checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// By the data directory's own key (whose public half is shown).
    Verified,
    /// The key was not at hand (kept outside the data directory).
    NotChecked(String),
    /// The signature or the note is wrong: the certificate says so.
    Failed(String),
}

/// The newest signed checkpoint of the ledger.
#[derive(Debug, Clone)]
pub struct CheckpointFacts {
    /// Relative to the data directory.
    pub file: String,
    pub origin: String,
    pub size: u64,
    pub root_hex: String,
    pub root_b64: String,
    /// The 4-byte key id of the log's signature line, hex.
    pub key_id: String,
    /// The C2SP verifier key (`gapless audit pubkey`), when at hand.
    pub public_key: Option<String>,
    pub signature: SignatureCheck,
    /// The signed note, verbatim (keep it: `audit consistency --old`).
    pub note: String,
}

/// A witness's cosignature on the checkpoint, as stored beside it
/// (`_ledger/checkpoints/<size>.<key id>.cosig`, schemas/AUDIT.md).
#[derive(Debug, Clone)]
pub struct Cosignature {
    /// The tree size it cosigned: the newest cosigned checkpoint at or
    /// below the newest checkpoint (a command that commits, such as the
    /// report itself, makes a newer one that no witness has seen yet).
    pub size: u64,
    pub witness: String,
    pub key_id: String,
    /// When the witness signed (RFC 3339), as its cosignature says.
    pub signed_at: Option<String>,
}

/// The cosignatures of the newest checkpoint, at or below `checkpoint`,
/// that witnesses cosigned. The page shows them as claims: only the
/// witness's own key can check one (`gapless audit verify --witness KEY`,
/// which the page tells), and the page is not given it. A file that is not
/// a cosignature line is left out here and found by `audit verify`.
pub fn cosignatures(data: &Path, checkpoint: &CheckpointFacts) -> Vec<Cosignature> {
    let dir = data
        .join(crate::layout::LEDGER_DIR)
        .join(crate::layout::CHECKPOINTS_DIR);
    let Ok(names) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let all: Vec<Cosignature> = names
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (size, _) = name.strip_suffix(".cosig")?.split_once('.')?;
            let size: u64 = size.parse().ok().filter(|s| *s <= checkpoint.size)?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            parse_cosignature_line(size, text.lines().next()?)
        })
        .collect();
    let newest = all.iter().map(|c| c.size).max();
    let mut out: Vec<Cosignature> = all.into_iter().filter(|c| Some(c.size) == newest).collect();
    out.sort_by(|a, b| a.witness.cmp(&b.witness));
    out
}

/// `— NAME BASE64(key id (4) ‖ time (8, big-endian) ‖ signature (64))`.
fn parse_cosignature_line(size: u64, line: &str) -> Option<Cosignature> {
    let (name, blob) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    if blob.len() != 4 + 8 + 64 {
        return None;
    }
    let time = i64::from_be_bytes(blob[4..12].try_into().ok()?);
    let signed_at = time
        .checked_mul(1_000_000)
        .and_then(crate::time::try_format_micros);
    Some(Cosignature {
        size,
        witness: name.to_owned(),
        key_id: hex::encode(&blob[..4]),
        signed_at,
    })
}

/// What the verification box shows.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The data directory, as given (for the commands to copy).
    pub data: PathBuf,
    /// None when the ledger has no checkpoint yet.
    pub checkpoint: Option<CheckpointFacts>,
    pub cosignatures: Vec<Cosignature>,
}

/// A whole document: one certificate per group, in group order (meters
/// without a group last).
#[derive(Debug, Clone)]
pub struct Certificate {
    pub window: Window,
    pub generated_at: i64,
    pub groups: Vec<GroupCertificate>,
    pub verification: Verification,
    /// Files written with these numbers (the CLI's report Parquet), shown
    /// with the others.
    pub report_files: Vec<FileFact>,
}

/// Which certificates.
#[derive(Debug, Clone, Default)]
pub struct CertificateRequest {
    /// Medium and status, as for the report.
    pub filter: ReportFilter,
    /// Only this registry group [default: every group].
    pub group: Option<String>,
    /// The signing key file, when not DATA/_state/audit.key.
    pub audit_key: Option<PathBuf>,
    /// Report files to list, as written (paths that start with DATA).
    pub report_files: Vec<PathBuf>,
}

/// Whether some registry entry names group `g` (only the registry gives
/// meters a group).
pub(crate) fn is_registry_group(ctx: &Context, g: &str) -> bool {
    ctx.registry
        .meters()
        .any(|(_, entries)| entries.iter().any(|e| e.group.as_deref() == Some(g)))
}

/// A register's report row and coverage, from one look at its series.
type Pair = (MeterRow, CoverageRow);

/// Gathers the certificates of `window` from one scan of the sealed
/// readings, and the ledger facts they rest on.
pub fn certificate(
    data: &Path,
    stored: &StoredReadings,
    ctx: &Context,
    window: Window,
    req: &CertificateRequest,
    generated_at: i64,
) -> Result<Certificate, CertificateError> {
    let buckets = picture_buckets(window)?;
    let medium = req.filter.medium;
    let mut pairs: Vec<Pair> = stored
        .map_series(ctx, |s| {
            if medium.is_some_and(|m| m != s.medium) {
                return None;
            }
            if let Some(g) = &req.group {
                if s.group != Some(g.as_str()) {
                    return None;
                }
            }
            Some((
                window::evaluate(s, window)?,
                coverage::series_coverage(s, &buckets)?,
            ))
        })?
        .into_iter()
        .flatten()
        .collect();
    if let Some(g) = &req.group {
        if pairs.is_empty() {
            return Err(CertificateError::NoSuchGroup(g.clone()));
        }
    }
    if pairs.len() > MAX_ROWS {
        return Err(CertificateError::TooLarge { rows: pairs.len() });
    }
    pairs.sort_by(|a, b| (&a.0.meter_id, &a.0.register).cmp(&(&b.0.meter_id, &b.0.register)));

    // By group, named groups in order, then the meters without one.
    // Keyed (no group?, group): named groups first, in order.
    let mut by_group: BTreeMap<(bool, Option<String>), Vec<Pair>> = BTreeMap::new();
    for p in pairs {
        by_group
            .entry((p.0.group.is_none(), p.0.group.clone()))
            .or_default()
            .push(p);
    }
    let ledger = Ledger::open(data).map_err(|e| CertificateError::Ledger(e.to_string()))?;
    let mut groups = Vec::with_capacity(by_group.len());
    let mut facts: std::collections::HashMap<PathBuf, FileFact> = Default::default();
    for ((_, group), pairs) in by_group {
        let mut summary = Summary::default();
        let mut verdicts = [0u64; 3];
        for (r, _) in &pairs {
            summary.add(r);
            verdicts[Verdict::of(r) as usize] += 1;
        }
        let since = pairs
            .iter()
            .filter_map(|(r, _)| r.opening.map(|o| o.ts))
            .fold(window.from, i64::min);
        let mut meters: Vec<&str> = pairs.iter().map(|(r, _)| r.meter_id.as_str()).collect();
        meters.dedup();
        let mut files = Vec::new();
        for path in stored.files_holding(&meters) {
            // Groups share files: each footer and entry is read once.
            let fact = match facts.get(path) {
                Some(f) => f.clone(),
                None => {
                    let f = file_fact(data, &ledger, path)?;
                    facts.insert(path.to_owned(), f.clone());
                    f
                }
            };
            let ends_before = fact
                .entry
                .as_ref()
                .and_then(|e| e.max_time.as_deref())
                .and_then(|t| parse_time(t).ok())
                .is_some_and(|t| t < since);
            if !ends_before {
                files.push(fact);
            }
        }
        files.sort_by_key(|f| f.entry.as_ref().map_or(u64::MAX, |e| e.index));
        let rows = pairs
            .into_iter()
            .filter(|(r, _)| req.filter.status.is_none_or(|s| s == r.status))
            .map(|(row, coverage)| CertifiedRow {
                verdict: Verdict::of(&row),
                row,
                coverage,
            })
            .collect();
        groups.push(GroupCertificate {
            group,
            summary,
            verdicts,
            rows,
            files,
        });
    }

    let checkpoint = latest_checkpoint(data, &ledger, req.audit_key.as_deref())?;
    let cosignatures = checkpoint
        .as_ref()
        .map(|c| cosignatures(data, c))
        .unwrap_or_default();
    let report_files = req
        .report_files
        .iter()
        .map(|p| file_fact(data, &ledger, p))
        .collect::<Result<_, _>>()?;
    Ok(Certificate {
        window,
        generated_at,
        groups,
        verification: Verification {
            data: data.to_owned(),
            checkpoint,
            cosignatures,
        },
        report_files,
    })
}

/// [`BUCKETS`] columns, fewer for a window shorter than that many seconds.
fn picture_buckets(window: Window) -> Result<Buckets, CertificateError> {
    let secs = (window.to - window.from) / crate::continuity::SECOND;
    let n = BUCKETS.min(u32::try_from(secs).unwrap_or(u32::MAX)).max(1);
    Buckets::try_new(window, n).map_err(CertificateError::Window)
}

/// A sealed file's ledger entry, found by the index its footer names
/// (`gapless.ledger_index`) and checked to name this file.
fn file_fact(data: &Path, ledger: &Ledger, path: &Path) -> Result<FileFact, CertificateError> {
    let bad = |why: String| {
        CertificateError::Report(ReportError::Read {
            path: path.to_owned(),
            why,
        })
    };
    let rel = path
        .strip_prefix(data)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let index = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "gapless.ledger_index"))
        .and_then(|k| k.value.as_deref())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("gapless.ledger_index {v:?} is not a number")))
        })
        .transpose()?;
    let Some(index) = index else {
        return Ok(FileFact {
            path: rel,
            entry: None,
        });
    };
    let ledger_err = |e: String| CertificateError::Ledger(format!("entry {index}: {e}"));
    let bytes = ledger
        .read_entry(index)
        .map_err(|e| ledger_err(e.to_string()))?;
    let entry: LedgerEntry =
        serde_json::from_slice(&bytes).map_err(|e| ledger_err(e.to_string()))?;
    if entry.path != rel {
        return Err(ledger_err(format!(
            "names {}, but {rel}'s footer points to it",
            entry.path
        )));
    }
    Ok(FileFact {
        path: rel,
        entry: Some(entry),
    })
}

/// The newest checkpoint, its fields, and whether its signature holds
/// under the data directory's key (or `audit_key`).
fn latest_checkpoint(
    data: &Path,
    ledger: &Ledger,
    audit_key: Option<&Path>,
) -> Result<Option<CheckpointFacts>, CertificateError> {
    let err = |e: String| CertificateError::Ledger(e);
    let Some((size, path)) = ledger.checkpoints().map_err(|e| err(e.to_string()))?.pop() else {
        return Ok(None);
    };
    let note =
        std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let file = path
        .strip_prefix(data)
        .unwrap_or(&path)
        .display()
        .to_string();
    let mut lines = note.lines();
    let origin = lines.next().unwrap_or("").to_owned();
    let root_b64 = lines.nth(1).unwrap_or("").to_owned();
    let root_hex = base64::engine::general_purpose::STANDARD
        .decode(&root_b64)
        .map(hex::encode)
        .unwrap_or_default();
    let key_id = note
        .lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| l.split_once(' '))
        .find(|(name, _)| *name == origin)
        .and_then(|(_, blob)| base64::engine::general_purpose::STANDARD.decode(blob).ok())
        .filter(|b| b.len() >= 4)
        .map(|b| hex::encode(&b[..4]))
        .unwrap_or_default();
    let key: Result<NoteVerifier, String> = match audit_key {
        Some(p) => crate::store::ledger::AuditKey::load_or_create(data, Some(p))
            .map(|k| k.verifier())
            .map_err(|e| e.to_string()),
        None => crate::audit::trusted_key(data, None).map_err(|e| e.to_string()),
    };
    let (public_key, signature) = match key {
        Ok(k) => {
            let check = match k.verify(&note) {
                Ok(c) if c.size == size && c.origin == origin => SignatureCheck::Verified,
                Ok(c) => SignatureCheck::Failed(format!(
                    "the note says size {} of {}, its file name size {size}",
                    c.size, c.origin
                )),
                Err(e) => SignatureCheck::Failed(e.to_string()),
            };
            (Some(k.encode()), check)
        }
        Err(e) => (None, SignatureCheck::NotChecked(e)),
    };
    Ok(Some(CheckpointFacts {
        file,
        origin,
        size,
        root_hex,
        root_b64,
        key_id,
        public_key,
        signature,
        note,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::IntervalSource;
    use crate::reading::Medium;

    fn row(status: Status, consumption: Option<i128>, exact: bool) -> MeterRow {
        let at = |ts| {
            Some(crate::continuity::window::ValueAt {
                ts,
                value: 0,
                decimals: 3,
            })
        };
        let both = status != Status::Open && status != Status::Silent;
        MeterRow {
            meter_id: "M-1".into(),
            register: Some("total".into()),
            medium: Medium::Water,
            unit: Some("m3".into()),
            group: Some("b-7".into()),
            status,
            expected: 24,
            received: 20,
            late: 0,
            missing: 4,
            gaps: 1,
            seq_missing: None,
            longest_gap_s: 14_400,
            opening: at(0),
            closing: if both { at(1) } else { None },
            consumption,
            consumption_decimals: 3,
            consumption_exact: exact,
            interval_s: 3600,
            interval_source: IntervalSource::Inferred,
            conflicts: 0,
            notes: Vec::new(),
        }
    }

    /// 24 columns, fewer for a short window; under a second is refused.
    #[test]
    fn the_picture_has_a_column_per_hour_of_a_day() {
        let s = crate::continuity::SECOND;
        let w = |len| Window { from: 0, to: len };
        assert_eq!(picture_buckets(w(86_400 * s)).unwrap().len(), 24);
        assert_eq!(picture_buckets(w(10 * s)).unwrap().len(), 10);
        assert!(matches!(
            picture_buckets(w(s / 2)),
            Err(CertificateError::Window(_))
        ));
    }

    /// Provable needs both readings, an exact step and no anomaly; both
    /// readings without that are only estimable; a missing side is lost.
    #[test]
    fn verdicts_follow_the_report_row() {
        for (status, consumption, exact, want) in [
            (Status::Complete, Some(5), true, Verdict::Provable),
            (Status::Bridged, Some(5), true, Verdict::Provable),
            (Status::Bridged, Some(5), false, Verdict::Estimable),
            (Status::Anomalous, Some(5), true, Verdict::Estimable),
            (Status::Anomalous, None, false, Verdict::Estimable),
            (Status::Open, None, false, Verdict::Lost),
            (Status::Silent, None, false, Verdict::Lost),
        ] {
            assert_eq!(
                Verdict::of(&row(status, consumption, exact)),
                want,
                "{status} {consumption:?} exact={exact}"
            );
        }
    }
}
