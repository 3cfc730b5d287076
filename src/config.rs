//! Settings: what `--config FILE` (TOML) and the flags say, validated into
//! the structs the stages take. Flags win over the file; the file wins over
//! the defaults. Every problem is reported with the setting's name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::decode::{DecodeConfig, Format};
use crate::ingest::IngestConfig;
use crate::mqtt::MqttSettings;
use crate::store::StoreConfig;

pub(crate) const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
pub(crate) const DEFAULT_TOPICS: [&str; 2] = ["meters/#", "wmbusmeters/#"];
pub(crate) const DEFAULT_DATA: &str = "./gapless-data";
pub const PASSWORD_ENV: &str = "GAPLESS_MQTT_PASSWORD";
pub(crate) const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
pub(crate) const DEFAULT_MAX_FUTURE_SKEW_S: u64 = 86_400;
pub(crate) const DEFAULT_SEAL_MAX_ROWS: usize = 500_000;
pub(crate) const DEFAULT_SEAL_MAX_AGE_S: f64 = 60.0;
/// How often `serve` looks for dates to compact (seconds).
pub(crate) const DEFAULT_COMPACT_EVERY_S: f64 = 600.0;
/// How long after a UTC date ends it is compacted (seconds): readings of
/// the last minutes still arrive.
pub(crate) const DEFAULT_COMPACT_GRACE_S: u64 = 3600;
/// Lake scans the API runs at once (`--max-scans`): one per core of a
/// small gateway box, leaving the ingest path its share.
pub(crate) const DEFAULT_MAX_SCANS: usize = 2;

/// The TOML file users write (`--config FILE`). Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub broker: Option<String>,
    pub topics: Option<Vec<String>>,
    pub client_id: Option<String>,
    pub data: Option<PathBuf>,
    pub username: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub max_payload_bytes: Option<usize>,
    pub max_future_skew_s: Option<u64>,
    pub seal_max_rows: Option<usize>,
    pub seal_max_age_s: Option<f64>,
    pub max_registers_per_meter: Option<usize>,
    pub gap_memory_days: Option<u32>,
    pub compact_every_s: Option<f64>,
    pub compact_grace_s: Option<u64>,
    pub connect_attempts: Option<u32>,
    /// `--stall-limit`: seconds a busy stage may go without a heartbeat.
    pub stall_limit_s: Option<u64>,
    /// `--max-scans`: lake scans the API runs at once.
    pub max_scans: Option<usize>,
    /// Pin a payload format to topics: `[[formats]] filter = "lora/#" format = "chirpstack"`.
    #[serde(default)]
    pub formats: Vec<FormatPinConfig>,
    /// The meter registry (CSV), for `report` and `gaps` (`--registry` wins).
    pub registry: Option<PathBuf>,
    /// Continuity rules: `[continuity]`.
    pub continuity: Option<crate::continuity::ContinuityFileConfig>,
    /// Ed25519 seed (hex file) that signs the audit ledger's checkpoints
    /// [default: DATA/_state/audit.key, made on first start].
    pub audit_key: Option<PathBuf>,
    /// Address of the HTTP API (`--http`).
    pub http: Option<String>,
    /// Bearer token of the HTTP API (else GAPLESS_API_TOKEN).
    pub api_token: Option<String>,
    /// Alert rules and sinks: `[alerts]`.
    pub alerts: Option<crate::alerts::AlertsFileConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormatPinConfig {
    pub filter: String,
    pub format: String,
}

/// What the flags of `gapless serve` say (None = not given).
#[derive(Debug, Default, Clone)]
pub struct ServeFlags {
    pub config: Option<PathBuf>,
    pub broker: Option<String>,
    pub topics: Vec<String>,
    pub client_id: Option<String>,
    pub data: Option<PathBuf>,
    pub username: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub max_payload_bytes: Option<usize>,
    pub max_future_skew_s: Option<u64>,
    pub seal_max_rows: Option<usize>,
    pub seal_max_age_s: Option<f64>,
    pub max_registers_per_meter: Option<usize>,
    pub gap_memory_days: Option<u32>,
    pub compact_every_s: Option<f64>,
    pub compact_grace_s: Option<u64>,
    pub connect_attempts: Option<u32>,
    pub stall_limit_s: Option<u64>,
    pub max_scans: Option<usize>,
    pub registry: Option<PathBuf>,
    pub audit_key: Option<PathBuf>,
    /// `--audit-key-in-data`: a signing key inside the data directory is fine.
    pub audit_key_in_data: bool,
    /// `--witness URL=VKEY`, as given.
    pub witnesses: Vec<String>,
    pub http: Option<String>,
    /// From GAPLESS_API_TOKEN.
    pub api_token: Option<String>,
    pub alert_webhook: Option<String>,
    /// Tests only: "now" is read from this file (RFC 3339).
    pub clock_file: Option<PathBuf>,
}

/// Validated settings of `gapless serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub mqtt: MqttSettings,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    /// The client id was chosen by the user (else it is the data directory's own).
    pub client_id_given: bool,
    /// The HTTP API: where it listens and its bearer token.
    pub http: Option<(std::net::SocketAddr, String)>,
    /// Where alerts are delivered.
    pub sinks: crate::alerts::sink::SinkSettings,
    /// Tests only: "now" is read from this file (RFC 3339).
    pub clock_file: Option<PathBuf>,
    /// Compaction of ended dates (`store::compact`): how often to look
    /// (None = never), and how long after a date's end.
    pub compact_every: Option<Duration>,
    pub compact_grace: Duration,
    /// The signing key may be inside the data directory.
    pub audit_key_in_data: bool,
    /// Witnesses that cosign each new checkpoint.
    pub witnesses: Vec<crate::witness::client::WitnessTarget>,
    /// A busy stage without a heartbeat for this long makes `/readyz` 503.
    pub stall_limit: Duration,
    /// Lake scans the API runs at once (the next request gets 429).
    pub max_scans: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

pub(crate) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl ServeSettings {
    /// Merges flags over the file over the defaults, and validates.
    /// `password` is the value of GAPLESS_MQTT_PASSWORD, if set.
    pub fn resolve(
        flags: ServeFlags,
        password: Option<String>,
    ) -> Result<ServeSettings, ConfigError> {
        let file = match &flags.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let continuity = continuity_context(&file, flags.registry.as_deref())?;
        let broker = flags
            .broker
            .or(file.broker)
            .unwrap_or_else(|| DEFAULT_BROKER.to_string());
        let broker =
            crate::mqtt::parse_broker(&broker).map_err(|e| invalid("--broker", e.to_string()))?;
        let topics = if !flags.topics.is_empty() {
            flags.topics
        } else {
            file.topics
                .unwrap_or_else(|| DEFAULT_TOPICS.iter().map(|s| s.to_string()).collect())
        };
        if topics.is_empty() {
            return Err(invalid("--topic", "at least one topic filter is needed"));
        }
        for t in &topics {
            crate::mqtt::validate_filter(t).map_err(|e| invalid("--topic", e.to_string()))?;
        }
        let data = flags
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let ca_file = flags.ca_file.or(file.ca_file);
        if ca_file.is_some() && !broker.tls {
            return Err(invalid(
                "--ca-file",
                "given, but the broker URL is mqtt:// (use mqtts://)",
            ));
        }
        let client_id = flags.client_id.or(file.client_id);
        if let Some(id) = &client_id {
            if id.is_empty() || id.len() > 128 {
                return Err(invalid("--client-id", "must be 1-128 characters"));
            }
        }
        let max_payload_bytes = flags
            .max_payload_bytes
            .or(file.max_payload_bytes)
            .unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES);
        if max_payload_bytes == 0 {
            return Err(invalid("--max-payload-bytes", "must be at least 1"));
        }
        let skew = flags
            .max_future_skew_s
            .or(file.max_future_skew_s)
            .unwrap_or(DEFAULT_MAX_FUTURE_SKEW_S);
        let seal_max_rows = flags
            .seal_max_rows
            .or(file.seal_max_rows)
            .unwrap_or(DEFAULT_SEAL_MAX_ROWS);
        if seal_max_rows == 0 {
            return Err(invalid("--seal-max-rows", "must be at least 1"));
        }
        let max_registers_per_meter = flags
            .max_registers_per_meter
            .or(file.max_registers_per_meter)
            .unwrap_or(crate::ingest::DEFAULT_MAX_REGISTERS_PER_METER);
        if max_registers_per_meter == 0 || max_registers_per_meter > u16::MAX as usize {
            return Err(invalid(
                "--max-registers-per-meter",
                "must be between 1 and 65535",
            ));
        }
        let gap_memory_days = flags
            .gap_memory_days
            .or(file.gap_memory_days)
            .unwrap_or(crate::ingest::DEFAULT_GAP_MEMORY_DAYS);
        if gap_memory_days == 0 || gap_memory_days > 3_650 {
            return Err(invalid("--gap-memory-days", "must be between 1 and 3650"));
        }
        let seal_max_age = flags
            .seal_max_age_s
            .or(file.seal_max_age_s)
            .unwrap_or(DEFAULT_SEAL_MAX_AGE_S);
        if !(seal_max_age.is_finite() && seal_max_age > 0.0) {
            return Err(invalid(
                "--seal-max-age",
                "must be a positive number of seconds",
            ));
        }
        let compact_every = flags
            .compact_every_s
            .or(file.compact_every_s)
            .unwrap_or(DEFAULT_COMPACT_EVERY_S);
        if !(compact_every.is_finite() && compact_every >= 0.0) {
            return Err(invalid(
                "--compact-every",
                "must be a number of seconds (0 = never)",
            ));
        }
        let compact_grace = flags
            .compact_grace_s
            .or(file.compact_grace_s)
            .unwrap_or(DEFAULT_COMPACT_GRACE_S);
        let mut pinned = Vec::new();
        for pin in file.formats {
            crate::mqtt::validate_filter(&pin.filter)
                .map_err(|e| invalid("formats.filter", e.to_string()))?;
            let format = Format::parse(&pin.format).ok_or_else(|| {
                invalid(
                    "formats.format",
                    format!(
                        "{:?} is not one of native, wmbusmeters, chirpstack, tts",
                        pin.format
                    ),
                )
            })?;
            pinned.push((pin.filter, format));
        }
        let http = match flags.http.or(file.http) {
            None => None,
            Some(addr) => {
                let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
                    invalid(
                        "--http",
                        format!("{addr:?} is not HOST:PORT (e.g. 127.0.0.1:8080)"),
                    )
                })?;
                let token = flags
                    .api_token
                    .or(file.api_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "--http",
                            format!(
                                "the API needs a bearer token: set {} or api_token in the config",
                                crate::api::TOKEN_ENV
                            ),
                        )
                    })?;
                Some((addr, token))
            }
        };
        let file_alerts = file.alerts.clone().unwrap_or_default();
        let alerts = crate::alerts::AlertConfig::from_file(&file_alerts)
            .map_err(|m| invalid("alerts", m))?;
        let sinks = crate::alerts::sink::SinkSettings::resolve(
            &file_alerts,
            flags.alert_webhook.clone(),
            &broker,
        )
        .map_err(|(setting, m)| invalid(setting, m))?;
        let attempts = flags
            .connect_attempts
            .or(file.connect_attempts)
            .unwrap_or(5)
            .max(1);
        let witnesses = flags
            .witnesses
            .iter()
            .map(|w| crate::witness::client::WitnessTarget::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid("--witness", m))?;
        let stall_limit = flags
            .stall_limit_s
            .or(file.stall_limit_s)
            .unwrap_or(crate::health::DEFAULT_STALL_LIMIT_S);
        if stall_limit == 0 {
            return Err(invalid("--stall-limit", "must be at least 1 second"));
        }
        let max_scans = flags
            .max_scans
            .or(file.max_scans)
            .unwrap_or(DEFAULT_MAX_SCANS);
        if max_scans == 0 {
            return Err(invalid("--max-scans", "must be at least 1"));
        }
        Ok(ServeSettings {
            audit_key_in_data: flags.audit_key_in_data,
            witnesses,
            stall_limit: Duration::from_secs(stall_limit),
            max_scans,
            http,
            sinks,
            clock_file: flags.clock_file,
            compact_every: (compact_every > 0.0).then(|| Duration::from_secs_f64(compact_every)),
            compact_grace: Duration::from_secs(compact_grace),
            client_id_given: client_id.is_some(),
            mqtt: MqttSettings {
                host: broker.host,
                port: broker.port,
                tls: broker.tls,
                ca_file,
                client_id: client_id.unwrap_or_default(),
                topics,
                username: flags.username.or(file.username),
                password,
                keep_alive: Duration::from_secs(30),
                initial_attempts: attempts,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                clock: crate::time::Clock::System,
                subscriptions_file: None,
            },
            store: StoreConfig {
                data,
                audit_key: flags.audit_key.or(file.audit_key),
                ledger: true,
            },
            ingest: IngestConfig {
                seal_max_rows,
                seal_max_age: Duration::from_secs_f64(seal_max_age),
                decode: DecodeConfig {
                    max_payload_bytes,
                    max_future_skew_micros: (skew as i64).saturating_mul(1_000_000),
                    pinned,
                },
                continuity,
                alerts,
                max_registers_per_meter,
                gap_memory: Duration::from_secs(gap_memory_days as u64 * 86_400),
            },
        })
    }
}

/// What `report` and `gaps` need besides their own flags: the continuity
/// rules and the audit key from `--config FILE`, and the registry from
/// `--registry FILE` (or the file's `registry`).
pub(crate) fn query_context(
    config: Option<&Path>,
    registry: Option<&Path>,
) -> Result<(crate::continuity::Context, Option<PathBuf>), ConfigError> {
    let file = match config {
        Some(p) => read_file(p)?,
        None => FileConfig::default(),
    };
    Ok((continuity_context(&file, registry)?, file.audit_key))
}

fn continuity_context(
    file: &FileConfig,
    registry: Option<&Path>,
) -> Result<crate::continuity::Context, ConfigError> {
    let config = match &file.continuity {
        Some(c) => crate::continuity::ContinuityConfig::from_file(c)
            .map_err(|e| invalid("continuity", e.to_string()))?,
        None => crate::continuity::ContinuityConfig::default(),
    };
    let registry = match registry.or(file.registry.as_deref()) {
        Some(p) => crate::continuity::registry::Registry::load(p)
            .map_err(|e| invalid("--registry", e.to_string()))?,
        None => Default::default(),
    };
    Ok(crate::continuity::Context {
        config,
        registry: std::sync::Arc::new(registry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("g.toml");
        std::fs::write(
            &cfg,
            "broker = \"mqtt://10.0.0.1:1884\"\ntopics = [\"a/#\"]\nseal_max_rows = 7\ncompact_every_s = 0\ncompact_grace_s = 60\n[[formats]]\nfilter = \"lora/#\"\nformat = \"chirpstack\"\n",
        )
        .unwrap();
        let flags = ServeFlags {
            config: Some(cfg.clone()),
            broker: Some("mqtt://127.0.0.1:2000".into()),
            ..Default::default()
        };
        let s = ServeSettings::resolve(flags, Some("pw".into())).unwrap();
        assert_eq!(s.mqtt.port, 2000);
        assert_eq!(s.mqtt.topics, vec!["a/#"]);
        assert_eq!(s.ingest.seal_max_rows, 7);
        assert_eq!(
            s.ingest.decode.pinned,
            vec![("lora/#".to_string(), Format::Chirpstack)]
        );
        assert_eq!(s.mqtt.password.as_deref(), Some("pw"));
        assert_eq!(s.compact_every, None, "0 = never");
        assert_eq!(s.compact_grace, Duration::from_secs(60));
        let defaults = ServeSettings::resolve(ServeFlags::default(), None).unwrap();
        assert_eq!(defaults.compact_every, Some(Duration::from_secs(600)));
        let err = ServeSettings::resolve(
            ServeFlags {
                compact_every_s: Some(-1.0),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--compact-every"), "{err}");

        std::fs::write(&cfg, "brokr = \"x\"\n").unwrap();
        let err = ServeSettings::resolve(
            ServeFlags {
                config: Some(cfg),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("brokr"), "{err}");
    }
}
