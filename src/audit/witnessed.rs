//! `audit verify --witness`: the checkpoints were seen by witnesses.
//!
//! Offline (`--witness VKEY`): every cosignature file beside a checkpoint
//! verifies over that checkpoint; the newest checkpoint (the one that signs
//! every entry) is cosigned by at least `--min-cosignatures` of the given
//! witnesses; and no cosignature names a tree larger than the ledger (a
//! ledger cut back after the witness saw more). Online (`--witness
//! URL=VKEY`): the witness is also asked which tree it holds for this log
//! (an `add-checkpoint` with old size 0, which it answers with 409 and its
//! size): a larger tree than the data's means the data and its checkpoints
//! were rolled back together, which nothing in the data can show.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::Verification;
use crate::layout::{CHECKPOINTS_DIR, LEDGER_DIR};
use crate::witness::client::{self, Answer, WitnessTarget};
use crate::witness::note::{split_note, Cosigned, CosignerKey};

/// A witness to require: its key, and where to ask it (optional).
#[derive(Debug, Clone)]
pub struct Required {
    pub key: CosignerKey,
    pub target: Option<WitnessTarget>,
}

impl Required {
    /// `VKEY` or `URL=VKEY`.
    pub fn parse(flag: &str) -> Result<Required, String> {
        if flag.contains('=') {
            let t = WitnessTarget::parse(flag)?;
            Ok(Required {
                key: t.key.clone(),
                target: Some(t),
            })
        } else {
            Ok(Required {
                key: CosignerKey::parse(flag)?,
                target: None,
            })
        }
    }
}

/// Adds to `v` what does not hold about the witnesses' cosignatures.
/// Returns the newest tree size cosigned by at least `min` witnesses.
pub fn check(data: &Path, v: &mut Verification, witnesses: &[Required], min: usize) -> Option<u64> {
    let dir = data.join(LEDGER_DIR).join(CHECKPOINTS_DIR);
    let by_id: BTreeMap<String, usize> = witnesses
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key.id_hex(), i))
        .collect();
    // size → the witnesses whose cosignature of it verifies
    let mut cosigned: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let Some((size, id)) = name
            .strip_suffix(".cosig")
            .and_then(|s| s.split_once('.'))
            .and_then(|(s, id)| Some((s.parse::<u64>().ok()?, id)))
        else {
            continue;
        };
        let Some(&w) = by_id.get(id) else {
            continue; // a witness the auditor did not name
        };
        let subject = format!("cosignature {}", dir.join(&name).display());
        let note = match fs::read_to_string(dir.join(format!("{size:012}.txt"))) {
            Ok(n) => n,
            Err(_) => {
                v.find(
                    subject,
                    format!(
                        "{} cosigned a checkpoint of {size} entries that is not here: it was removed",
                        witnesses[w].key.name
                    ),
                );
                continue;
            }
        };
        let lines = fs::read_to_string(dir.join(&name)).unwrap_or_default();
        let Some((body, _)) = split_note(&note) else {
            continue; // the checkpoint's own finding says why
        };
        match witnesses[w].key.check(body, &lines) {
            Cosigned::Valid(_) => {
                cosigned.entry(size).or_default().insert(w);
            }
            Cosigned::Absent => v.find(
                subject,
                format!("holds no cosignature by {}", witnesses[w].key.name),
            ),
            Cosigned::Invalid(why) => v.find(subject, why),
        }
        if size > v.entries {
            v.find(
                format!("checkpoint of {size} entries"),
                format!(
                    "{} cosigned a tree of {size} entries, the ledger has {}: entries were removed after it was witnessed (a rollback)",
                    witnesses[w].key.name, v.entries
                ),
            );
        }
    }
    let newest_cosigned = cosigned
        .iter()
        .rev()
        .find(|(_, ws)| ws.len() >= min)
        .map(|(&s, _)| s);
    match (&v.checkpoint, newest_cosigned) {
        (Some(_), None) => v.find(
            "witnesses",
            format!(
                "no checkpoint is cosigned by {min} of the {} witnesses given: the ledger was never witnessed",
                witnesses.len()
            ),
        ),
        (Some(cp), Some(c)) if cp.size > c => v.find(
            "witnesses",
            format!(
                "the newest checkpoint signs {} entries, but the newest one cosigned by {min} witnesses only {c}: entries {c}..{} were never witnessed",
                cp.size, cp.size
            ),
        ),
        _ => {}
    }
    // Ask the witnesses that have a URL which tree they hold.
    let note = v.checkpoint.as_ref().and_then(|cp| {
        fs::read_to_string(dir.join(format!("{:012}.txt", cp.size)))
            .ok()
            .map(|n| (cp.size, n))
    });
    let asked: Vec<&WitnessTarget> = witnesses.iter().filter_map(|w| w.target.as_ref()).collect();
    if let (Some((size, note)), false) = (note, asked.is_empty()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        for t in asked {
            let answer = match &rt {
                Ok(rt) => rt.block_on(client::add_checkpoint(t, 0, &[], &note)),
                Err(e) => Err(e.to_string()),
            };
            let subject = format!("witness {}", t.url);
            match answer {
                Ok(Answer::Holds(n)) if n > size => v.find(
                    subject,
                    format!(
                        "holds a cosigned tree of {n} entries for this log; the data has {size}: the data and its checkpoints were rolled back"
                    ),
                ),
                Ok(Answer::Holds(n)) if n < size => v.find(
                    subject,
                    format!("has seen only {n} of the {size} entries: the newest checkpoints were never witnessed"),
                ),
                Ok(Answer::Holds(_)) | Ok(Answer::Cosigned(_)) => {}
                Ok(Answer::Refused(status, body)) => v.find(
                    subject,
                    format!("refused the newest checkpoint: HTTP {status}: {}", body.trim_end()),
                ),
                Err(e) => v.find(
                    subject,
                    format!("unreachable ({e}): cannot tell whether the data was rolled back"),
                ),
            }
        }
    }
    newest_cosigned
}
