//! The demo's witness: `gapless witness` in process, standing for the one
//! an auditor runs on their own machine, so that the demo's ledger ends up
//! cosigned and the auditor's commands can be shown working.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::store::ledger::AuditKey;
use crate::witness::client::WitnessTarget;
use crate::witness::note::Cosigner;
use crate::witness::server::{self, WitnessConfig};

pub(crate) struct DemoWitness {
    pub target: WitnessTarget,
    dir: PathBuf,
    origin: String,
    log_vkey: String,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Starts the witness on a free loopback port, trusting the data
/// directory's log key (made now if it is not there yet).
pub async fn start(data: &Path) -> anyhow::Result<DemoWitness> {
    let dir = data.join(crate::layout::WITNESS_DIR);
    std::fs::create_dir_all(&dir)?;
    let log = AuditKey::load_or_create(data, None)?;
    let log_vkey = log.verifier().encode();
    std::fs::write(dir.join("log.vkey"), format!("{log_vkey}\n"))?;
    let cosigner =
        Cosigner::load_or_create(&dir.join("witness.key"), Some("demo.auditor/witness"))?;
    let vkey = cosigner.verifier().encode();
    std::fs::write(dir.join("witness.vkey"), format!("{vkey}\n"))?;
    let app = server::router(WitnessConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        state: dir.join("state"),
        cosigner,
        logs: vec![(log.name.clone(), log.verifier())],
    })?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });
    let target =
        WitnessTarget::parse(&format!("http://{addr}={vkey}")).map_err(anyhow::Error::msg)?;
    eprintln!(
        "demo: witness {} on http://{addr} (stands for an auditor's)",
        target.key.name
    );
    Ok(DemoWitness {
        target,
        dir,
        origin: log.name,
        log_vkey,
        stop,
    })
}

impl DemoWitness {
    /// Has the last checkpoint cosigned (the service's task stopped with
    /// the service), stops the witness, and prints the auditor's commands.
    pub async fn finish(self, data: &Path) -> anyhow::Result<()> {
        let size = crate::witness::client::cosign_newest(data, &self.target)
            .await
            .map_err(anyhow::Error::msg)
            .context("having the last checkpoint cosigned")?;
        let _ = self.stop.send(true);
        let d = data.display();
        let w = self.dir.display();
        println!(
            "\nThe ledger's {size} entries are cosigned by the witness {}. An auditor checks it:\n  \
             gapless audit verify --data {d} --pubkey {w}/log.vkey --witness $(cat {w}/witness.vkey)\n  \
             python3 tools/verify_audit.py {d} {w}/log.vkey --witness {w}/witness.vkey\n\
             and, with the witness running again (its state is kept), asks it for rollbacks:\n  \
             gapless witness --listen 127.0.0.1:7380 --state {w}/state --key {w}/witness.key --name demo.auditor/witness --origin {}={} &\n  \
             gapless audit verify --data {d} --pubkey {w}/log.vkey --witness http://127.0.0.1:7380=$(cat {w}/witness.vkey)\n\
             The same ledger as a C2SP tlog-tiles log, for standard tools (origin {}):\n  \
             python3 -m http.server -d {d}/_ledger/tlog 8080   # then GET /checkpoint, /tile/0/000, /tile/entries/000\n\
             (Each `gapless report` enters its own file in the ledger under a checkpoint no witness has seen: \
             after one, `--witness` says so until a serve with --witness has it cosigned.)",
            self.target.key.name, self.origin, self.log_vkey, self.origin
        );
        Ok(())
    }
}
