//! The log's side of `tlog-witness`: `serve --witness URL=VKEY` sends each
//! new checkpoint, with the consistency proof from the size the witness
//! holds, and stores the cosignature beside the checkpoint:
//! `_ledger/checkpoints/<size, 12 digits>.<witness key id, 8 hex>.cosig`
//! (one signature line). It runs as a task of its own that reads what the
//! ledger wrote (`_ledger/head.json`, then the checkpoint it names), so a
//! witness that is slow or down never holds up ingest or sealing: its
//! failures are counted and retried with backoff, and once it answers it
//! is sent the newest checkpoint, which covers everything before it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;

use super::note::{split_note, Cosigned, CosignerKey};
use crate::health::LiveStats;
use crate::layout::{CHECKPOINTS_DIR, ENTRIES_DIR, HEAD_FILE, LEDGER_DIR};
use crate::store::canonical::{consistency_path, leaf_hash, Hash};
use crate::store::ledger::entry_name;

/// How often the task looks for a new checkpoint.
const TICK: Duration = Duration::from_millis(250);
/// Retry delays after a failure: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One request's time limit: a witness that hangs is a failure, retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One witness: where it is and its key.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// As given, `http://HOST[:PORT][/PREFIX]`.
    pub url: String,
    host: String,
    port: u16,
    /// The submission prefix's path, without a trailing `/`.
    prefix: String,
    pub key: CosignerKey,
}

impl WitnessTarget {
    /// `URL=VKEY` (a verifier key has no `=`: its base64 is 44 characters
    /// without padding).
    pub fn parse(flag: &str) -> Result<WitnessTarget, String> {
        let (url, vkey) = flag
            .rsplit_once('=')
            .ok_or_else(|| format!("{flag:?}: expected URL=VKEY"))?;
        let key = CosignerKey::parse(vkey)?;
        let (host, port, path) =
            crate::alerts::sink::parse_http_url(url).map_err(|e| e.to_string())?;
        Ok(WitnessTarget {
            url: url.to_owned(),
            host,
            port,
            prefix: path.trim_end_matches('/').to_owned(),
            key,
        })
    }
}

/// What a witness answered.
#[derive(Debug)]
pub enum Answer {
    /// 200: its cosignature lines.
    Cosigned(String),
    /// 409 with a size: the size it holds is not the old size sent.
    Holds(u64),
    /// Any other status, with the body.
    Refused(u16, String),
}

/// One `add-checkpoint` request.
pub async fn add_checkpoint(
    t: &WitnessTarget,
    old: u64,
    proof: &[Hash],
    note: &str,
) -> Result<Answer, String> {
    use http_body_util::BodyExt;
    use hyper::header::CONTENT_TYPE;
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&B64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    let exchange = async {
        let res = crate::alerts::sink::http_post(
            &t.host,
            t.port,
            &format!("{}/add-checkpoint", t.prefix),
            "text/plain; charset=utf-8",
            Bytes::from(body),
        )
        .await?;
        let status = res.status().as_u16();
        let is_size = res
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(match status {
            200 => Answer::Cosigned(text),
            409 if is_size => match text.trim_end_matches('\n').parse() {
                Ok(n) => Answer::Holds(n),
                Err(_) => Answer::Refused(status, text),
            },
            _ => Answer::Refused(status, text),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The cosignature file of checkpoint `size` by the witness with key id `id`.
pub(crate) fn cosignature_path(data: &Path, size: u64, id: &str) -> PathBuf {
    data.join(LEDGER_DIR)
        .join(CHECKPOINTS_DIR)
        .join(format!("{size:012}.{id}.cosig"))
}

/// Leaf hashes of the ledger, read once each (entries never change).
struct Leaves {
    data: PathBuf,
    hashes: Vec<Hash>,
}

impl Leaves {
    fn up_to(&mut self, n: u64) -> Result<&[Hash], String> {
        while (self.hashes.len() as u64) < n {
            let i = self.hashes.len() as u64;
            let p = self
                .data
                .join(LEDGER_DIR)
                .join(ENTRIES_DIR)
                .join(entry_name(i));
            let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            self.hashes.push(leaf_hash(&b));
        }
        Ok(&self.hashes[..n as usize])
    }
}

/// The newest checkpoint: (size, note), from the head the writer keeps.
fn newest_checkpoint(data: &Path) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        size: u64,
    }
    let head: Head =
        serde_json::from_slice(&std::fs::read(data.join(LEDGER_DIR).join(HEAD_FILE)).ok()?).ok()?;
    let p = data
        .join(LEDGER_DIR)
        .join(CHECKPOINTS_DIR)
        .join(format!("{:012}.txt", head.size));
    Some((head.size, std::fs::read_to_string(p).ok()?))
}

/// Per witness: what it holds (as far as we know) and when to try again.
struct Peer {
    target: WitnessTarget,
    /// The size it cosigned last (None: not known yet; sent 0 first, and
    /// its 409 says).
    holds: Option<u64>,
    retry_at: Instant,
    backoff: Duration,
}

/// Starts the witnessing task of `serve` (None without witnesses). It
/// ends when `shutdown` becomes true.
pub fn spawn(
    data: PathBuf,
    targets: Vec<WitnessTarget>,
    live: Arc<LiveStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if targets.is_empty() {
        return None;
    }
    let mut peers: Vec<Peer> = targets
        .into_iter()
        .map(|target| Peer {
            target,
            holds: None,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
        })
        .collect();
    let mut leaves = Leaves {
        data: data.clone(),
        hashes: Vec::new(),
    };
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let d = data.clone();
            let Ok(Some((size, note))) =
                tokio::task::spawn_blocking(move || newest_checkpoint(&d)).await
            else {
                continue;
            };
            for p in &mut peers {
                if p.holds == Some(size) || Instant::now() < p.retry_at {
                    continue;
                }
                match submit(&data, p, size, &note, &mut leaves).await {
                    Ok(()) => {
                        p.backoff = BACKOFF_MIN;
                        tracing::info!(witness = %p.target.url, size, "witness: cosigned");
                    }
                    Err(e) => {
                        live.witness_failures.fetch_add(1, Ordering::Relaxed);
                        p.retry_at = Instant::now() + p.backoff;
                        tracing::warn!(witness = %p.target.url, size, error = %e, retry_in = ?p.backoff, "witness: not cosigned; retrying");
                        p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            let all = peers
                .iter()
                .map(|p| p.holds.unwrap_or(0))
                .min()
                .unwrap_or(0);
            live.witness_cosigned_size.store(all, Ordering::Relaxed);
        }
    }))
}

/// Has the newest checkpoint of `data` cosigned by `target` now (one
/// exchange, for `gapless demo` once its service stopped). Its size.
pub(crate) async fn cosign_newest(data: &Path, target: &WitnessTarget) -> Result<u64, String> {
    let (size, note) = newest_checkpoint(data).ok_or("no checkpoint yet")?;
    let mut peer = Peer {
        target: target.clone(),
        holds: None,
        retry_at: Instant::now(),
        backoff: BACKOFF_MIN,
    };
    let mut leaves = Leaves {
        data: data.to_owned(),
        hashes: Vec::new(),
    };
    submit(data, &mut peer, size, &note, &mut leaves).await?;
    Ok(size)
}

/// At shutdown: the newest checkpoint to every witness, each given at
/// most `grace` (one that does not answer gets it on the next start).
pub async fn finish(data: &Path, targets: &[WitnessTarget], grace: Duration) {
    for t in targets {
        match tokio::time::timeout(grace, cosign_newest(data, t)).await {
            Ok(Ok(size)) => tracing::info!(witness = %t.url, size, "witness: cosigned at shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(witness = %t.url, error = %e, "witness: not cosigned at shutdown; sent on the next start")
            }
            Err(_) => {
                tracing::warn!(witness = %t.url, "witness: no answer at shutdown; sent on the next start")
            }
        }
    }
}

/// Sends checkpoint `size` to one witness (twice at most: a 409 tells the
/// size it holds, and the second request proves from there).
async fn submit(
    data: &Path,
    p: &mut Peer,
    size: u64,
    note: &str,
    leaves: &mut Leaves,
) -> Result<(), String> {
    for _ in 0..2 {
        let old = p.holds.unwrap_or(0).min(size);
        let proof = if old == 0 {
            Vec::new()
        } else {
            consistency_path(old as usize, leaves.up_to(size)?)
        };
        match add_checkpoint(&p.target, old, &proof, note).await? {
            Answer::Cosigned(lines) => {
                let (body, _) = split_note(note).ok_or("the checkpoint is not a signed note")?;
                let line = lines
                    .lines()
                    .find(|l| matches!(p.target.key.check(body, l), Cosigned::Valid(_)))
                    .ok_or_else(|| {
                        format!("answered 200 without a valid cosignature by its key: {lines:?}")
                    })?;
                let path = cosignature_path(data, size, &p.target.key.id_hex());
                let text = format!("{line}\n");
                tokio::task::spawn_blocking(move || write_new(&path, text.as_bytes()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("storing the cosignature: {e}"))?;
                p.holds = Some(size);
                return Ok(());
            }
            Answer::Holds(n) if n > size => {
                p.holds = Some(n);
                return Err(format!(
                    "the witness holds a tree of {n} entries, more than this ledger's {size}: \
                     the ledger was rolled back, or another writer signs with this key"
                ));
            }
            Answer::Holds(n) => p.holds = Some(n),
            Answer::Refused(status, body) => {
                return Err(format!("HTTP {status}: {}", body.trim_end()))
            }
        }
    }
    Err("the witness's size changed while we talked".into())
}

/// Creates `path` durably, never overwriting it: a cosignature already
/// there is kept.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), crate::layout::LayoutError> {
    match crate::layout::create_new_durably(path, bytes, 0o644) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}
