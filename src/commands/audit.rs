//! `gapless audit`: pubkey, keygen, verify, prove, check-proof and
//! consistency, as the command line runs them.

use std::path::Path;

use super::Usage;
use crate::cli::AuditCommand;

/// Runs one `gapless audit` command, printing its result: `Ok(true)` when
/// what it checked holds, `Ok(false)` when it does not (exit 1, the
/// findings printed); a [`Usage`] error for a flag that cannot be taken.
pub fn run(cmd: AuditCommand) -> anyhow::Result<bool> {
    match cmd {
        AuditCommand::Pubkey { data, audit_key } => {
            let key_file = audit_key.unwrap_or_else(|| crate::layout::default_audit_key(&data));
            let key = crate::store::ledger::AuditKey::load_or_create(&data, Some(&key_file))?;
            println!("{}", key.verifier().encode());
            Ok(true)
        }

        AuditCommand::Prove {
            data,
            meter,
            ts,
            pubkey,
            out,
        } => {
            let Ok(ts) = crate::time::parse_time(&ts) else {
                return Err(Usage(format!("--ts {ts:?} is not an RFC 3339 time")).into());
            };
            let key = crate::audit::trusted_key(&data, pubkey.as_deref())?;
            let proof = crate::audit::proof::prove(&data, &meter, ts, &key)?;
            let json = serde_json::to_string_pretty(&proof)?;
            match out {
                Some(p) => std::fs::write(&p, json + "\n")?,
                None => println!("{json}"),
            }
            Ok(true)
        }

        AuditCommand::CheckProof { file, pubkey } => {
            let key = crate::audit::trusted_key(Path::new("."), Some(&pubkey))?;
            let text = std::fs::read_to_string(&file)?;
            let proof: crate::audit::proof::InclusionProof = match serde_json::from_str(&text) {
                Ok(p) => p,
                Err(e) => {
                    println!(
                        "proof {}: not a gapless inclusion proof: {e}",
                        file.display()
                    );
                    return Ok(false);
                }
            };
            match crate::audit::proof::check(&proof, &key) {
                Ok(p) => {
                    println!(
                        "proof holds: this row of {} is entry {} of a ledger of {} entries signed by {}",
                        p.path, proof.entry_index, p.checkpoint.size, p.checkpoint.origin
                    );
                    for (k, v) in p.fields {
                        println!("  {k} = {v}");
                    }
                    Ok(true)
                }
                Err(e) => {
                    println!("proof {} does not hold: {e}", file.display());
                    Ok(false)
                }
            }
        }

        AuditCommand::Consistency { data, old, pubkey } => {
            let key = crate::audit::trusted_key(&data, pubkey.as_deref())?;
            let old_text = std::fs::read_to_string(&old)?;
            match crate::audit::proof::consistency(&data, &old_text, &key) {
                Ok(c) => {
                    println!("{}", serde_json::to_string_pretty(&c)?);
                    eprintln!(
                        "consistent: the ledger of {} entries extends the checkpoint of {}",
                        c.new_size, c.old_size
                    );
                    Ok(true)
                }
                Err(e) => {
                    println!("not consistent: {e}");
                    Ok(false)
                }
            }
        }

        AuditCommand::Keygen { out } => {
            let key = crate::store::ledger::AuditKey::generate(&out)?;
            println!("{}", key.verifier().encode());
            Ok(true)
        }

        AuditCommand::Verify {
            data,
            pubkey,
            witnesses,
            min_cosignatures,
            files_only,
        } => {
            let witnesses = match witnesses
                .iter()
                .map(|w| crate::audit::witnessed::Required::parse(w))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(w) => w,
                Err(e) => {
                    return Err(Usage(format!("--witness: {e}")).into());
                }
            };
            let min = min_cosignatures.unwrap_or(1);
            if !witnesses.is_empty() && (min == 0 || min > witnesses.len()) {
                return Err(Usage(format!(
                    "--min-cosignatures {min}: between 1 and the {} witnesses given",
                    witnesses.len()
                ))
                .into());
            }
            let key = match pubkey {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
                    match crate::store::ledger::NoteVerifier::parse(&text) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            return Err(Usage(format!("--pubkey {}: {e}", p.display())).into());
                        }
                    }
                }
                None => None,
            };
            // Told once per file done, from several threads.
            let bar = crate::progress::Progress::new("audit verify", 0, "files");
            let most_bytes = std::sync::atomic::AtomicU64::new(0);
            let progress = |_: usize, total: usize, bytes: u64| {
                bar.set_total(total as u64);
                bar.inc(1);
                let b = most_bytes.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
                bar.set_message(format!("{:.0} MB", b.max(bytes) as f64 / 1e6));
            };
            let mut v = crate::audit::verify_with(&data, key.as_ref(), &progress, files_only);
            drop(bar);
            if !witnesses.is_empty() {
                let cosigned = crate::audit::witnessed::check(&data, &mut v, &witnesses, min);
                if v.is_clean() {
                    println!(
                        "witnesses: the newest checkpoint ({} entries) is cosigned by {min} of {}",
                        cosigned.unwrap_or(0),
                        witnesses.len()
                    );
                }
            }
            if v.is_clean() {
                print!("{}", crate::audit::summary(&v));
                Ok(true)
            } else {
                println!("gapless audit verify: {} findings", v.findings.len());
                for f in &v.findings {
                    println!("  {f}");
                }
                Ok(false)
            }
        }
    }
}
