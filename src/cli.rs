//! Command-line flags, as typed. `config.rs` turns them into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ServeFlags;

#[derive(Debug, Parser)]
#[command(
    name = "gapless",
    version,
    about = "Metering data continuity verifier: MQTT readings to durable, deduplicated, audited Parquet"
)]
pub struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info`, `gapless=debug` [default:
    /// info; warn for `demo`, which prints its own progress].
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: subscribe, journal, ack, store.
    Serve(Box<ServeArgs>),
    /// Print the conservation counters of a data directory as JSON.
    Stats {
        /// Data directory.
        #[arg(long, default_value = crate::config::DEFAULT_DATA)]
        data: PathBuf,
    },
    /// The outage-window report: per meter and register, were readings lost
    /// in [FROM, TO), and is consumption across the window exactly provable?
    Report(ReportArgs),
    /// List the gaps of the stored readings (open gaps run to --to or now).
    Gaps(GapsArgs),
    /// List the alerts sealed in the data directory (what device teams were
    /// told), oldest first.
    Alerts(AlertsArgs),
    /// The whole pipeline on a simulated fleet with an outage: in-process
    /// broker, ingest through MQTT → journal → Parquet, then the report.
    Demo(DemoArgs),
    /// Merge each closed UTC date's readings files into one sorted file
    /// (`readings_compacted`, entered in the ledger), so that reports read
    /// one run per date. `serve` does this by itself; this is for data
    /// written before, or without it.
    Compact(CompactArgs),
    /// The audit ledger: verify a data directory, print the public key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A witness (C2SP tlog-witness) for an auditor to run on their own
    /// machine: cosigns a log's checkpoints only if each extends the last
    /// one it cosigned, so that no rollback or fork goes unseen.
    Witness(WitnessArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Data directory.
    #[arg(long, default_value = crate::config::DEFAULT_DATA)]
    pub data: PathBuf,
    /// Compact a date only once it ended this many seconds ago [default:
    /// 3600].
    #[arg(long, default_value_t = 3600)]
    pub grace: u64,
    /// Ed25519 seed (64 hex digits) that signs the audit ledger [default:
    /// DATA/_state/audit.key].
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// Listen here (HOST:PORT).
    #[arg(long)]
    pub listen: String,
    /// The witness's state: the newest checkpoint it cosigned per log.
    #[arg(long)]
    pub state: PathBuf,
    /// The witness's Ed25519 seed (64 hex digits), made (mode 0600) if missing.
    #[arg(long)]
    pub key: PathBuf,
    /// The witness's name in its cosignatures [default: witness/<16 hex
    /// digits of its public key's SHA-256>].
    #[arg(long)]
    pub name: Option<String>,
    /// A log to witness: its verifier key (`gapless audit pubkey`), which
    /// names its origin, or `ORIGIN=VKEY`; repeatable. (`--log` is the log
    /// filter of every command.)
    #[arg(long = "origin", value_name = "[ORIGIN=]VKEY", required = true)]
    pub logs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Data directory.
    #[arg(long, default_value = crate::config::DEFAULT_DATA)]
    pub data: PathBuf,
    /// Only conditions not closed yet (meter_silent, meter_never_seen,
    /// group_silent, reject_burst).
    #[arg(long)]
    pub open: bool,
    /// Only this kind (meter_silent, meter_resumed, group_silent, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this subject (meter id, group, topic).
    #[arg(long)]
    pub subject: Option<String>,
    /// One JSON object per line (schemas/alert.schema.json) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every file hash, row hash and root, the ledger tree and its
    /// signed checkpoints; check receipts and lineage. Exit 0 when all
    /// holds, 1 listing every finding.
    Verify {
        /// Data directory.
        #[arg(long, default_value = crate::config::DEFAULT_DATA)]
        data: PathBuf,
        /// The verifier key to trust (a file with the line `gapless audit
        /// pubkey` printed) [default: the data directory's own key].
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Require cosignatures by this witness (its verifier key, as
        /// `gapless witness` prints it); `URL=VKEY` also asks it which tree
        /// it holds, which finds a rollback of data and checkpoints.
        /// Repeatable.
        #[arg(long = "witness", value_name = "[URL=]VKEY")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned the newest
        /// checkpoint [default: 1].
        #[arg(long, requires = "witnesses")]
        min_cosignatures: Option<usize>,
        /// Check each file by its bytes and footer only (size, SHA-256,
        /// ledger index, row root, row count) with the ledger, tree,
        /// signatures and cosignatures; no row is read, so row roots,
        /// receipts and lineage are not recomputed.
        #[arg(long)]
        files_only: bool,
    },
    /// Make a new signing key (64 hex digits, mode 0600) outside the data
    /// directory, and print its verifier key.
    Keygen {
        /// The key file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an inclusion proof (JSON) of one reading: its canonical row,
    /// the path to its file's row root, the path to the ledger root, and
    /// the signed checkpoint.
    Prove {
        /// Data directory.
        #[arg(long, default_value = crate::config::DEFAULT_DATA)]
        data: PathBuf,
        #[arg(long)]
        meter: String,
        /// The reading's time (RFC 3339).
        #[arg(long)]
        ts: String,
        /// Key to sign-check against [default: the data directory's own].
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Write the proof here [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an inclusion proof without the data. Exit 0 if it holds.
    CheckProof {
        /// The proof (JSON) `audit prove` wrote.
        file: PathBuf,
        /// The verifier key to trust.
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Prove that the ledger today extends an earlier checkpoint (nothing
    /// removed or rewritten since). Exit 0 if it does.
    Consistency {
        /// Data directory.
        #[arg(long, default_value = crate::config::DEFAULT_DATA)]
        data: PathBuf,
        /// The earlier checkpoint (a file of `_ledger/checkpoints/` kept aside).
        #[arg(long)]
        old: PathBuf,
        /// Key to check against [default: the data directory's own].
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Print the ledger's public key (C2SP note verifier key).
    Pubkey {
        /// Data directory.
        #[arg(long, default_value = crate::config::DEFAULT_DATA)]
        data: PathBuf,
        /// The signing key file, if not DATA/_state/audit.key.
        #[arg(long)]
        audit_key: Option<PathBuf>,
    },
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    /// Only write the Parquet file under DATA/reports/ and print its path.
    Parquet,
    /// The outage certificate: one printable HTML page per registry group
    /// (or only --group), self-contained.
    Html,
}

/// Output formats of `gaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GapsFormat {
    Table,
    Json,
    Csv,
}

/// What `report` and `gaps` share.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Data directory.
    #[arg(long, default_value = crate::config::DEFAULT_DATA)]
    pub data: PathBuf,
    /// Meter registry (CSV: meter_id,medium,expected_interval_s,group,installed_at,removed_at).
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// TOML file whose [continuity] table sets the rules (and `registry`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only meters of this medium (heat, cooling, water, warm_water, hca).
    #[arg(long)]
    pub medium: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub query: QueryArgs,
    /// Window start (RFC 3339 or YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    pub from: String,
    /// Window end, exclusive.
    #[arg(long)]
    pub to: String,
    /// List only meters with this status (the summary still counts all):
    /// anomalous, silent, open, bridged, complete.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// With --format html: the certificate of this registry group only.
    #[arg(long)]
    pub group: Option<String>,
    /// Also write linear-interpolation estimates for the missing slots of
    /// closed gaps (a separate Parquet file, every row flagged `estimated`).
    #[arg(long)]
    pub estimate: bool,
    /// The key that signs the ledger the report's Parquet is entered in
    /// (as `serve --audit-key`) [default: `audit_key` of --config, else
    /// DATA/_state/audit.key].
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GapsArgs {
    #[command(flatten)]
    pub query: QueryArgs,
    /// Only this meter.
    #[arg(long)]
    pub meter: Option<String>,
    /// Only gaps ending after this time.
    #[arg(long)]
    pub from: Option<String>,
    /// Only gaps starting before this time; open gaps end here [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// Only open gaps (meters silent until --to or now).
    #[arg(long)]
    pub open: bool,
    #[arg(long, value_enum, default_value_t = GapsFormat::Table)]
    pub format: GapsFormat,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use this broker instead of the in-process one (mqtt://HOST:PORT).
    #[arg(long)]
    pub broker: Option<String>,
    /// Meters in the simulated fleet.
    #[arg(long, default_value_t = 10_000)]
    pub meters: usize,
    /// Where the demo's data goes (emptied first).
    #[arg(long, default_value = "./gapless-demo")]
    pub data: PathBuf,
    /// Seed of the simulation (same seed, same fleet and outage).
    #[arg(long, default_value_t = 2022)]
    pub seed: u64,
    /// Afterwards, serve the API and the dashboard on the demo's data (as
    /// `serve --http`) with a token it makes up, and print the link that
    /// shows the outage; until Ctrl-C or SIGTERM.
    #[arg(long)]
    pub serve: bool,
    /// Where --serve listens (HOST:PORT; port 0 picks a free one)
    /// [default: 127.0.0.1:8080].
    #[arg(long, requires = "serve")]
    pub http: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with the same settings (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT [default: mqtt://127.0.0.1:1883].
    #[arg(long)]
    pub broker: Option<String>,
    /// Topic filter to subscribe to (repeatable) [default: meters/# and wmbusmeters/#].
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// MQTT client id [default: one per data directory, kept in DATA/_state/client_id].
    #[arg(long)]
    pub client_id: Option<String>,
    /// Data directory [default: ./gapless-data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// MQTT user name (the password comes from GAPLESS_MQTT_PASSWORD).
    #[arg(long)]
    pub username: Option<String>,
    /// CA certificate (PEM) for mqtts:// [default: the system's roots].
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Reject payloads larger than this [default: 262144].
    #[arg(long)]
    pub max_payload_bytes: Option<usize>,
    /// Reject readings stamped more than this many seconds ahead of receive time [default: 86400].
    #[arg(long)]
    pub max_future_skew: Option<u64>,
    /// Seal Parquet files once this many rows (messages or readings) are waiting [default: 500000].
    #[arg(long)]
    pub seal_max_rows: Option<usize>,
    /// Seal Parquet files once the oldest waiting message is this many seconds old [default: 60].
    #[arg(long)]
    pub seal_max_age: Option<f64>,
    /// Reject a message that would give a meter more distinct registers than this [default: 64].
    #[arg(long)]
    pub max_registers_per_meter: Option<usize>,
    /// Keep a gap in memory this many days after it ends; a late reading
    /// in an older gap is looked up in the sealed files [default: 3].
    #[arg(long)]
    pub gap_memory_days: Option<u32>,
    /// Look for ended UTC dates to compact (one sorted readings file per
    /// date, for reports) this often, in seconds; 0 = never [default: 600].
    #[arg(long)]
    pub compact_every: Option<f64>,
    /// Compact a date once it ended this many seconds ago [default: 3600].
    #[arg(long)]
    pub compact_grace: Option<u64>,
    /// Connection attempts at start before giving up [default: 5].
    #[arg(long)]
    pub connect_attempts: Option<u32>,
    /// Seconds a busy stage may go without a heartbeat before /readyz
    /// answers 503 naming it [default: 60].
    #[arg(long)]
    pub stall_limit: Option<u64>,
    /// Lake scans (report, gaps, coverage, meter, readings) the API runs at
    /// once; the next request gets 429 with Retry-After [default: 2].
    #[arg(long)]
    pub max_scans: Option<usize>,
    /// Meter registry (CSV) for the live gap detection [default: the config's `registry`].
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Ed25519 seed (64 hex digits) that signs the audit ledger [default:
    /// DATA/_state/audit.key, made on first start].
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
    /// Accept a signing key inside the data directory (the default place,
    /// DATA/_state/audit.key): then whoever can write the data can re-sign
    /// it. For demos and tests; keep the key elsewhere in production.
    #[arg(long, env = "GAPLESS_AUDIT_KEY_IN_DATA")]
    pub audit_key_in_data: bool,
    /// Have each new checkpoint cosigned by this witness (`gapless
    /// witness`): its URL and verifier key; repeatable.
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witnesses: Vec<String>,
    /// Serve the HTTP API here (HOST:PORT); its bearer token comes from
    /// GAPLESS_API_TOKEN (or api_token in the config).
    #[arg(long)]
    pub http: Option<String>,
    /// POST every alert's JSON to this http:// URL (also `alerts.webhook_url`
    /// in the config).
    #[arg(long)]
    pub alert_webhook: Option<String>,
    /// Tests only: read "now" from this file (an RFC 3339 time), so that a
    /// test can move the service's clock.
    #[arg(long, hide = true)]
    pub clock_file: Option<PathBuf>,
}

impl From<ServeArgs> for ServeFlags {
    fn from(a: ServeArgs) -> Self {
        ServeFlags {
            config: a.config,
            broker: a.broker,
            topics: a.topics,
            client_id: a.client_id,
            data: a.data,
            username: a.username,
            ca_file: a.ca_file,
            max_payload_bytes: a.max_payload_bytes,
            max_future_skew_s: a.max_future_skew,
            seal_max_rows: a.seal_max_rows,
            seal_max_age_s: a.seal_max_age,
            max_registers_per_meter: a.max_registers_per_meter,
            gap_memory_days: a.gap_memory_days,
            compact_every_s: a.compact_every,
            compact_grace_s: a.compact_grace,
            connect_attempts: a.connect_attempts,
            stall_limit_s: a.stall_limit,
            max_scans: a.max_scans,
            registry: a.registry,
            audit_key: a.audit_key,
            audit_key_in_data: a.audit_key_in_data,
            witnesses: a.witnesses,
            http: a.http,
            api_token: std::env::var(crate::api::TOKEN_ENV).ok(),
            alert_webhook: a.alert_webhook,
            clock_file: a.clock_file,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput against a bare QoS 1 subscriber, same broker, same run.
    Ingest(BenchIngestArgs),
    /// Memory of the live continuity state per meter register (RSS before
    /// and after, divided).
    LiveState(BenchLiveStateArgs),
    /// The batch report over stored readings against DuckDB's LAG() gap
    /// query on the same files, same run, same gap counts.
    Report(BenchReportArgs),
    /// Lookups of old readings in the sealed files (what the ingest stage
    /// does for a late reading memory cannot classify): time per lookup.
    Lookup(BenchLookupArgs),
    /// The alert engine with a million meters: memory, the cost of checking
    /// deadlines, and how soon after its deadline a silent meter is raised.
    Alerts(BenchAlertsArgs),
}

#[derive(Debug, Args)]
pub struct BenchAlertsArgs {
    /// Meters tracked (12-character ids, 15-minute interval).
    #[arg(long, default_value_t = 1_000_000)]
    pub meters: usize,
}

#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// Readings to generate (when DATA holds none yet).
    #[arg(long, default_value_t = 50_000_000)]
    pub readings: usize,
    /// Meters they are spread over (heat meters, one reading every
    /// --interval-minutes).
    #[arg(long, default_value_t = 100_000)]
    pub meters: usize,
    /// Minutes between a meter's readings (give the same value on every run
    /// over one data set: the report's expected interval and DuckDB's gap
    /// threshold follow it).
    #[arg(long, default_value_t = 15)]
    pub interval_minutes: u32,
    /// Where the data set is generated, and kept for later runs.
    #[arg(long, default_value = "./gapless-bench-report")]
    pub data: PathBuf,
    /// Python with duckdb [default: GAPLESS_PYTHON, else a virtualenv the
    /// benchmark makes under DATA/.venv with pip install duckdb].
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Runs of each side (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Instead: what the audit ledger (row hashing, entries, signed
    /// checkpoints) costs the store. Ingests the generated data set twice,
    /// with and without the ledger, into temporary directories, and prints
    /// both rates.
    #[arg(long)]
    pub ledger_cost: bool,
    /// Instead of the ledger, compare runs where this share (in %) of the
    /// messages comes again two days late (their readings then older than
    /// the duplicate index's memory: each looked up in the sealed files)
    /// with runs where none does.
    #[arg(long)]
    pub late_cost: Option<f64>,
    /// Messages that come again late, in % (see --late-cost).
    #[arg(skip)]
    pub late_percent: f64,
}

#[derive(Debug, Args)]
pub struct BenchLiveStateArgs {
    /// Meters (one register each, 12-character ids).
    #[arg(long, default_value_t = 1_000_000)]
    pub meters: usize,
    /// Readings per meter (every 15 minutes, in order).
    #[arg(long, default_value_t = 4)]
    pub readings: usize,
}

#[derive(Debug, Args)]
pub struct BenchLookupArgs {
    /// A data directory with sealed readings (e.g. `gapless bench report`'s).
    #[arg(long, default_value = "./gapless-bench-report")]
    pub data: PathBuf,
    /// Lookups, of readings sampled across the sealed files.
    #[arg(long, default_value_t = 1000)]
    pub lookups: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchIngestMode {
    Live,
    Backlog,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Broker to use [default: start a private mosquitto on a free port].
    #[arg(long)]
    pub broker: Option<String>,
    /// Messages per run.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Readings per message (run once for each value given).
    #[arg(long = "readings-per-message", default_values_t = vec![1, 50])]
    pub readings_per_message: Vec<usize>,
    /// Runs per mode and message size (alternating which subscriber goes
    /// first); the median ratio is printed after them.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where gapless writes during the benchmark [default: a temporary directory].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which modes to run: `live` (a publisher streams while the subscriber
    /// drains), `backlog` (the broker is preloaded for the offline session,
    /// then drained), or both.
    #[arg(long, value_delimiter = ',', default_values = ["live", "backlog"])]
    pub mode: Vec<BenchIngestMode>,
    /// Also run gapless without the audit ledger, and print what the ledger
    /// costs (acked and sealed rates, same broker, same run).
    #[arg(long)]
    pub compare_ledger: bool,
    /// Make this share of the messages (in %) hostile, each rejected with
    /// its bytes: hostile exponents, deep nesting, invalid UTF-8, malformed
    /// JSON, huge numbers, in turn. What bad input costs the good.
    #[arg(long, default_value_t = 0.0)]
    pub hostile_percent: f64,
    /// Pin the private broker to CPU 0 and this process (both subscribers,
    /// the publisher and gapless) to CPU 1 (`taskset`), so that the broker
    /// does not take the CPU a subscriber needs. Needs 2 CPUs.
    #[arg(long)]
    pub pin: bool,
}
