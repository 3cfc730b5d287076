//! Witnesses: parties other than the operator that cosign the ledger's
//! checkpoints (C2SP `tlog-witness`, `tlog-cosignature`), so that the
//! ledger proves something even against whoever holds its signing key.
//!
//! A witness cosigns a checkpoint only if it extends the newest one it
//! cosigned before (a consistency proof): it refuses a rollback and a
//! fork. Whoever checks the data then needs only the witness's public key
//! to know that the checkpoints were seen, in that order, by someone the
//! operator does not control; and asking the witness what it holds finds
//! a rollback of data and checkpoints together.
//!
//! - [`note`]: cosignature lines (`cosignature/v1`, Ed25519, type 0x04),
//!   witness keys.
//! - [`server`]: `gapless witness`, the HTTP witness.
//! - [`client`]: `serve --witness`: sends each new checkpoint, stores the
//!   cosignatures beside it; the request `audit verify` uses too.

pub mod client;
pub mod note;
pub mod server;

use std::path::PathBuf;

use crate::store::ledger::NoteVerifier;

/// A `gapless witness` flag that cannot be taken: the flag, the value
/// given (when there is one) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}{}: {why}", value.as_ref().map(|v| format!(" {v:?}")).unwrap_or_default())]
pub struct FlagError {
    pub flag: &'static str,
    pub value: Option<String>,
    pub why: String,
}

fn flag_err(flag: &'static str, value: Option<&str>, why: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        value: value.map(str::to_owned),
        why: why.into(),
    }
}

/// `gapless witness`'s flags, checked.
pub fn config(
    listen: &str,
    state: PathBuf,
    key: &std::path::Path,
    name: Option<&str>,
    logs: &[String],
) -> Result<server::WitnessConfig, FlagError> {
    let listen = listen
        .parse()
        .map_err(|e| flag_err("--listen", Some(listen), format!("{e} (HOST:PORT)")))?;
    if logs.is_empty() {
        return Err(flag_err(
            "--origin ORIGIN=VKEY",
            None,
            "at least one log to witness",
        ));
    }
    let mut parsed = Vec::new();
    for l in logs {
        // The log's verifier key alone will do: it is named by the origin.
        if let Ok(key) = NoteVerifier::parse(l.trim()) {
            parsed.push((key.name.clone(), key));
            continue;
        }
        let (origin, vkey) = l
            .split_once('=')
            .ok_or_else(|| flag_err("--origin", Some(l), "expected ORIGIN=VKEY or VKEY"))?;
        let key =
            NoteVerifier::parse(vkey).map_err(|e| flag_err("--origin", Some(l), e.to_string()))?;
        if key.name != origin {
            return Err(flag_err(
                "--origin",
                Some(l),
                format!(
                    "the key is named {:?}, not the origin {origin:?} (gapless logs sign as their origin)",
                    key.name
                ),
            ));
        }
        parsed.push((origin.to_owned(), key));
    }
    let cosigner = note::Cosigner::load_or_create(key, name)
        .map_err(|e| flag_err("--key", None, e.to_string()))?;
    Ok(server::WitnessConfig {
        listen,
        state,
        cosigner,
        logs: parsed,
    })
}

#[cfg(test)]
mod tests {
    /// `--origin` takes the log's verifier key alone (as `audit pubkey`
    /// prints it) or `ORIGIN=VKEY`; an origin the key is not named by is
    /// refused.
    #[test]
    fn origin_is_a_verifier_key_or_origin_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let key = crate::store::ledger::AuditKey::from_hex(&"ab".repeat(32)).unwrap();
        let vkey = key.verifier().encode();
        let origin = key.verifier().name;
        let wkey = tmp.path().join("w.key");
        let cfg = |l: String| super::config("127.0.0.1:0", tmp.path().into(), &wkey, None, &[l]);
        for arg in [
            vkey.clone(),
            format!("{vkey}\n"),
            format!("{origin}={vkey}"),
        ] {
            let c = cfg(arg.clone()).unwrap_or_else(|e| panic!("{arg:?}: {e}"));
            assert_eq!(c.logs.len(), 1);
            assert_eq!(c.logs[0].0, origin, "{arg:?}");
        }
        let e = cfg(format!("other/log={vkey}")).err().unwrap();
        assert!(e.to_string().contains("not the origin"), "{e}");
        assert_eq!(e.flag, "--origin");
        assert_eq!(
            e.to_string(),
            format!(
                "--origin {:?}: the key is named {origin:?}, not the origin \"other/log\" \
                 (gapless logs sign as their origin)",
                format!("other/log={vkey}")
            )
        );
        assert_eq!(
            super::config("127.0.0.1:0", tmp.path().into(), &wkey, None, &[])
                .err()
                .unwrap()
                .to_string(),
            "--origin ORIGIN=VKEY: at least one log to witness"
        );
        assert!(cfg("no key".into()).is_err());
    }

    /// clap checks its definitions only when a command is parsed: a flag
    /// name used twice (`witness --log` against the global `--log`) would
    /// only show as a panic at run time.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }
}
