//! `gapless witness`: a C2SP `tlog-witness` that an auditor, a billing
//! customer or a regulator runs on their own machine.
//!
//! It keeps, per log origin it is told to trust, the newest checkpoint it
//! cosigned (`STATE/logs/<SHA-256 of the origin, hex>`, written atomically
//! before it answers), and cosigns a new checkpoint only if it extends that
//! one: the log's signature verifies, the old size is the size it holds,
//! and the consistency proof leads from its root to the new one.
//!
//! ```text
//! POST /add-checkpoint   old <size>\n <proof hash base64>\n … \n <signed checkpoint>
//!   200  cosignature lines          404  unknown origin      403  no valid log signature
//!   400  malformed, old > size      409  old size is not mine (body: my size, text/x.tlog.size),
//!                                        or the same size with another root (a fork)
//!   422  the consistency proof does not verify
//! ```

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::note::{parse_body, split_note, Cosigner};
use crate::store::canonical::{verify_consistency, Hash};
use crate::store::ledger::NoteVerifier;

/// A request is a size line, at most 63 proof lines and a checkpoint with
/// a few signatures: far below this.
const MAX_BODY: usize = 64 * 1024;
/// The spec's bound on consistency proof lines.
const MAX_PROOF: usize = 63;

/// What `gapless witness` runs with.
pub struct WitnessConfig {
    pub listen: SocketAddr,
    /// Where the newest cosigned checkpoint of each log is kept.
    pub state: PathBuf,
    pub cosigner: Cosigner,
    /// The logs it witnesses: origin → the log's key.
    pub logs: Vec<(String, NoteVerifier)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WitnessError {
    #[error("witness state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("witness state {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
}

/// The newest cosigned tree of one log.
#[derive(Clone, Copy)]
struct Latest {
    size: u64,
    root: Hash,
}

struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, NoteVerifier>,
    state: PathBuf,
    /// Checking the old size and persisting the new checkpoint happen
    /// under this lock, so two requests cannot roll each other back.
    latest: Mutex<HashMap<String, Latest>>,
}

fn state_file(state: &Path, origin: &str) -> PathBuf {
    state
        .join("logs")
        .join(hex::encode(Sha256::digest(origin.as_bytes())))
}

fn load(state: &Path, origin: &str) -> Result<Option<Latest>, WitnessError> {
    let path = state_file(state, origin);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(WitnessError::Io { path, source }),
    };
    let corrupt = |why: &str| WitnessError::Corrupt {
        path: path.clone(),
        why: why.into(),
    };
    let (body, _) = split_note(&text).ok_or_else(|| corrupt("not a signed note"))?;
    let (o, size, root) = parse_body(body).ok_or_else(|| corrupt("not a checkpoint"))?;
    if o != origin {
        return Err(corrupt("holds the checkpoint of another origin"));
    }
    Ok(Some(Latest { size, root }))
}

/// Writes the checkpoint durably (replaced whole: a crash leaves the old
/// one or the new one).
fn persist(state: &Path, origin: &str, note: &str) -> std::io::Result<()> {
    let path = state_file(state, origin);
    fs::create_dir_all(path.parent().unwrap_or(state))?;
    crate::layout::write_atomic(&path, note.as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), e))
}

/// The witness's router (tests drive it without a socket).
pub(crate) fn router(cfg: WitnessConfig) -> Result<Router, WitnessError> {
    let mut latest = HashMap::new();
    for (origin, _) in &cfg.logs {
        if let Some(l) = load(&cfg.state, origin)? {
            latest.insert(origin.clone(), l);
        }
    }
    let w = Arc::new(Witness {
        cosigner: cfg.cosigner,
        logs: cfg.logs.into_iter().collect(),
        state: cfg.state,
        latest: Mutex::new(latest),
    });
    Ok(Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(w))
}

/// Runs the witness until `shutdown` becomes true.
pub async fn run(
    cfg: WitnessConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let vkey = cfg.cosigner.verifier().encode();
    fs::create_dir_all(&cfg.state)?;
    fs::write(cfg.state.join("witness.vkey"), format!("{vkey}\n"))?;
    let app = router(cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, key = %vkey, "witness: listening");
    println!("witness listening on http://{addr}\nwitness key {vkey}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

/// A parsed request: old size, proof, the checkpoint note.
fn parse_request(body: &str) -> Result<(u64, Vec<Hash>, &str), String> {
    let (first, mut rest) = body.split_once('\n').ok_or("no old size line")?;
    let old = first
        .strip_prefix("old ")
        .filter(|s| !s.is_empty() && (s.len() == 1 || !s.starts_with('0')))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("bad old size line {first:?}"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or("no empty line before the checkpoint")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF {
            return Err(format!("more than {MAX_PROOF} consistency proof lines"));
        }
        let h: Hash = B64
            .decode(line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("proof line {line:?} is not a base64 SHA-256 hash"))?;
        proof.push(h);
    }
    Ok((old, proof, rest))
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let w2 = w.clone();
    match tokio::task::spawn_blocking(move || handle(&w2, &body)).await {
        Ok(r) => r,
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn handle(w: &Witness, body: &[u8]) -> Response {
    let Ok(text) = std::str::from_utf8(body) else {
        return reply(StatusCode::BAD_REQUEST, "request is not UTF-8\n");
    };
    let (old, proof, note) = match parse_request(text) {
        Ok(r) => r,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let origin = note.split('\n').next().unwrap_or("");
    let Some(key) = w.logs.get(origin) else {
        tracing::warn!(origin, "witness: unknown origin");
        return reply(StatusCode::NOT_FOUND, format!("unknown log {origin:?}\n"));
    };
    let cp = match key.verify(note) {
        Ok(cp) => cp,
        Err(e) => {
            tracing::warn!(origin, error = %e, "witness: checkpoint not signed by the log's key");
            return reply(StatusCode::FORBIDDEN, format!("{e}\n"));
        }
    };
    if old > cp.size {
        return reply(
            StatusCode::BAD_REQUEST,
            format!("old size {old} is beyond the checkpoint's {}\n", cp.size),
        );
    }
    let Some((body, _)) = split_note(note) else {
        return reply(StatusCode::BAD_REQUEST, "not a signed note\n");
    };
    let mut latest = w.latest.lock().unwrap_or_else(|p| p.into_inner());
    let mine = latest.get(origin).copied();
    let my_size = mine.map_or(0, |l| l.size);
    if old != my_size {
        // A log that does not know what it holds asks this way (old 0).
        tracing::info!(
            origin,
            old,
            mine = my_size,
            size = cp.size,
            "witness: old size is not mine"
        );
        return (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{my_size}\n"),
        )
            .into_response();
    }
    if let Some(l) = mine {
        if old == cp.size && l.root != cp.root {
            tracing::error!(
                origin,
                size = cp.size,
                "witness: FORK: a second checkpoint of the same size with another root"
            );
            return reply(
                StatusCode::CONFLICT,
                format!("fork: I cosigned a tree of {} with another root\n", cp.size),
            );
        }
        if !verify_consistency(old, cp.size, &l.root, &cp.root, &proof) {
            tracing::warn!(
                origin,
                old,
                size = cp.size,
                "witness: consistency proof does not verify"
            );
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the consistency proof from {old} to {} does not verify\n",
                    cp.size
                ),
            );
        }
    } else if !proof.is_empty() {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the proof must be empty from size 0\n",
        );
    }
    if let Err(e) = persist(&w.state, origin, note) {
        tracing::error!(error = %e, "witness: cannot persist its state: not cosigning");
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot persist the witness state\n",
        );
    }
    latest.insert(
        origin.to_owned(),
        Latest {
            size: cp.size,
            root: cp.root,
        },
    );
    drop(latest);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tracing::info!(origin, size = cp.size, "witness: cosigned");
    reply(StatusCode::OK, w.cosigner.cosign(body, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_the_spec_writes_them() {
        let h = B64.encode([7u8; 32]);
        let req = format!("old 3\n{h}\n{h}\n\norigin\n5\n{h}\n\n\u{2014} origin sig\n");
        let (old, proof, note) = parse_request(&req).unwrap();
        assert_eq!((old, proof.len()), (3, 2));
        assert!(note.starts_with("origin\n5\n"));
        assert!(parse_request("old 03\n\nx").is_err(), "leading zero");
        assert!(parse_request("old 3\nnot-a-hash\n\nx").is_err());
        assert!(parse_request("old 3\n").is_err(), "no blank line");
        let long = format!("old 1\n{}\nx", format!("{h}\n").repeat(64));
        assert!(parse_request(&long).unwrap_err().contains("63"));
    }
}
