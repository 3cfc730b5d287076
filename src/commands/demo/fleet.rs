//! A simulated sub-metering fleet with an outage, for `gapless demo`.
//!
//! Heat meters every 15 minutes (energy in kWh, with a one-byte access
//! number), water meters hourly (m³, access number), heat cost allocators
//! daily (units). Meters are spread over radio gateways that publish what
//! they heard every 15 minutes as one native JSON array. During the outage
//! window some gateways behave badly:
//!
//! - *buffering*: offline, but keep every telegram and forward it when the
//!   window ends (late readings; nothing missing);
//! - *lossy*: offline and forget what they heard; their meters come back
//!   after the window (readings missing, consumption still provable);
//! - *dead*: offline from the window's start and never back (silent).
//!
//! On healthy gateways, about 1 % of meters die during the window (open),
//! one heat meter's register goes backwards once (anomalous), and the radio
//! loses a telegram now and then. Deterministic for a given seed.

use crate::continuity::window::Window;
use crate::continuity::SECOND;
use crate::reading::{format_fixed, Medium};

/// Gateways publish this often.
pub(crate) const TICK: i64 = 15 * 60 * SECOND;
/// Meters per gateway.
const METERS_PER_GATEWAY: usize = 100;
/// Most readings in one message (a forwarded buffer is split): keeps
/// payloads far below the service's 256 KiB limit.
const MAX_READINGS_PER_MESSAGE: usize = 400;
/// Chance that the radio loses one telegram.
const RADIO_LOSS: f64 = 0.0002;
/// Share of meters on healthy gateways that die during the window.
const DIE_IN_WINDOW: f64 = 0.01;

/// splitmix64: small, fast, good enough for a simulation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayKind {
    Healthy,
    Buffering,
    Lossy,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Healthy,
    /// Sends nothing from this time on.
    DiesAt(i64),
    /// The first reading at or after this time is 12.345 units too low.
    GlitchesAt(i64),
}

#[derive(Debug, Clone)]
struct SimMeter {
    id: String,
    medium: Medium,
    register: &'static str,
    unit: &'static str,
    decimals: u8,
    interval: i64,
    next_due: i64,
    /// Register value × 10^9.
    value: i128,
    /// Mean growth per interval × 10^9.
    rate: i128,
    /// wM-Bus access number, if the meter sends one.
    acc: Option<u8>,
    gateway: usize,
    fate: Fate,
}

/// One message a gateway publishes.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// When it reaches the broker (simulated time, µs).
    pub at: i64,
    pub readings: usize,
}

/// What the simulation did, for the demo to print beside the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scenario {
    pub meters: usize,
    pub gateways: usize,
    pub buffering_gateways: usize,
    pub lossy_gateways: usize,
    pub dead_gateways: usize,
    pub meters_dying: usize,
    pub glitching_meter: Option<String>,
    pub radio_losses: u64,
}

pub(crate) struct Fleet {
    meters: Vec<SimMeter>,
    gateways: Vec<GatewayKind>,
    /// Per gateway: readings held back during the outage (JSON objects).
    buffers: Vec<Vec<String>>,
    outage: Window,
    rng: Rng,
    pub scenario: Scenario,
}

impl Fleet {
    /// A fleet of `n` meters whose first readings are due from `start`.
    pub fn new(n: usize, seed: u64, start: i64, outage: Window) -> Fleet {
        let mut rng = Rng::new(seed);
        let n_gw = n.div_ceil(METERS_PER_GATEWAY).max(1);
        let mut gateways = vec![GatewayKind::Healthy; n_gw];
        // A fixed share of each misbehaving kind (at least one each when
        // there are enough gateways), on gateways chosen by the seed.
        let mut order: Vec<usize> = (0..n_gw).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut next = order.into_iter();
        if n_gw >= 4 {
            for (kind, share) in [
                (GatewayKind::Buffering, 0.08),
                (GatewayKind::Lossy, 0.06),
                (GatewayKind::Dead, 0.03),
            ] {
                let k = ((n_gw as f64 * share).round() as usize).max(1);
                for g in next.by_ref().take(k) {
                    gateways[g] = kind;
                }
            }
        }
        let mut scenario = Scenario {
            meters: n,
            gateways: n_gw,
            ..Scenario::default()
        };
        for g in &gateways {
            match g {
                GatewayKind::Buffering => scenario.buffering_gateways += 1,
                GatewayKind::Lossy => scenario.lossy_gateways += 1,
                GatewayKind::Dead => scenario.dead_gateways += 1,
                GatewayKind::Healthy => {}
            }
        }
        let mut meters = Vec::with_capacity(n);
        let mut glitch_assigned = false;
        for i in 0..n {
            let (medium, prefix, register, unit, decimals, interval_s, per_interval) = match i % 5 {
                0 | 1 => (
                    Medium::Heat,
                    "HZ",
                    "energy",
                    "kWh",
                    3,
                    900,
                    0.2 + rng.unit() * 1.3,
                ),
                2 | 3 => (
                    Medium::Water,
                    "WZ",
                    "volume",
                    "m3",
                    3,
                    3_600,
                    0.005 + rng.unit() * 0.045,
                ),
                _ => (
                    Medium::Hca,
                    "HKV",
                    "current_period",
                    "hca",
                    0,
                    86_400,
                    2.0 + rng.unit() * 10.0,
                ),
            };
            let interval = interval_s * SECOND;
            let gateway = i / METERS_PER_GATEWAY;
            let window_len = (outage.to - outage.from).max(1);
            let fate = if gateways[gateway] != GatewayKind::Healthy {
                Fate::Healthy
            } else if !glitch_assigned && medium == Medium::Heat {
                glitch_assigned = true;
                scenario.glitching_meter = Some(format!("{prefix}-{i:06}"));
                Fate::GlitchesAt(outage.from + window_len / 3)
            } else if rng.unit() < DIE_IN_WINDOW {
                scenario.meters_dying += 1;
                Fate::DiesAt(outage.from + (rng.unit() * window_len as f64) as i64)
            } else {
                Fate::Healthy
            };
            let scale = 1e9;
            meters.push(SimMeter {
                id: format!("{prefix}-{i:06}"),
                medium,
                register,
                unit,
                decimals,
                interval,
                // A random phase within the interval, on whole seconds.
                next_due: start + rng.below(interval_s as u64) as i64 * SECOND,
                value: ((rng.unit() * 20_000.0).round() as i128) * 1_000_000_000,
                rate: (per_interval * scale) as i128,
                acc: (medium != Medium::Hca).then(|| rng.below(256) as u8),
                gateway,
                fate,
            });
        }
        Fleet {
            meters,
            buffers: vec![Vec::new(); n_gw],
            gateways,
            outage,
            rng,
            scenario,
        }
    }

    /// The gateways' messages for the quarter hour ending at `t`.
    pub(crate) fn tick(&mut self, t: i64) -> Vec<Message> {
        let mut heard: Vec<Vec<String>> = vec![Vec::new(); self.gateways.len()];
        for m in &mut self.meters {
            while m.next_due <= t {
                let ts = m.next_due;
                m.next_due += m.interval;
                // Growth with ±30 % noise, at the meter's precision.
                let quantum = 10i128.pow(9 - m.decimals as u32);
                let growth = (m.rate as f64 * (0.7 + 0.6 * self.rng.unit())) as i128;
                m.value += (growth / quantum) * quantum;
                let acc = m.acc.map(|a| {
                    m.acc = Some(a.wrapping_add(1));
                    a.wrapping_add(1)
                });
                let mut value = m.value;
                match m.fate {
                    Fate::DiesAt(d) if ts >= d => continue,
                    Fate::GlitchesAt(g) if ts >= g => {
                        value -= 12_345_000_000;
                        m.fate = Fate::Healthy;
                    }
                    _ => {}
                }
                if self.rng.unit() < RADIO_LOSS {
                    self.scenario.radio_losses += 1;
                    continue;
                }
                let in_outage = ts >= self.outage.from && ts < self.outage.to;
                let kind = self.gateways[m.gateway];
                let json = reading_json(m, ts, value, acc);
                match kind {
                    GatewayKind::Dead if ts >= self.outage.from => {}
                    GatewayKind::Lossy if in_outage => {}
                    GatewayKind::Buffering if in_outage => self.buffers[m.gateway].push(json),
                    _ => heard[m.gateway].push(json),
                }
            }
        }
        let mut out = Vec::new();
        for (g, readings) in heard.into_iter().enumerate() {
            let topic = format!("meters/gw-{g:04}");
            // A buffering gateway forwards what it kept once it is back.
            if t >= self.outage.to && !self.buffers[g].is_empty() {
                let buffered = std::mem::take(&mut self.buffers[g]);
                for chunk in buffered.chunks(MAX_READINGS_PER_MESSAGE) {
                    out.push(message(&topic, chunk, t + 2 * 60 * SECOND));
                }
            }
            for chunk in readings.chunks(MAX_READINGS_PER_MESSAGE) {
                out.push(message(&topic, chunk, t + 5 * SECOND));
            }
        }
        out
    }

    /// The group (gateway) to show first: one that lost what it heard in
    /// the outage (its meters' consumption is still provable), else the
    /// first.
    pub(crate) fn example_group(&self) -> String {
        let g = self
            .gateways
            .iter()
            .position(|k| *k == GatewayKind::Lossy)
            .unwrap_or(0);
        format!("gw-{g:04}")
    }

    /// The registry the demo writes: every meter with its medium and
    /// gateway (as group); heat cost allocators with their daily interval
    /// (the others' intervals are inferred); plus `extra` meters that were
    /// installed but never sent anything.
    pub(crate) fn registry_csv(&self, extra: usize) -> String {
        let mut s =
            String::from("meter_id,medium,expected_interval_s,group,installed_at,removed_at\n");
        for m in &self.meters {
            let interval = if m.medium == Medium::Hca { "86400" } else { "" };
            s.push_str(&format!(
                "{},{},{interval},gw-{:04},,\n",
                m.id, m.medium, m.gateway
            ));
        }
        for k in 0..extra {
            s.push_str(&format!("WZ-NEVER-{k:03},water,3600,gw-0000,,\n"));
        }
        s
    }
}

fn reading_json(m: &SimMeter, ts: i64, value: i128, acc: Option<u8>) -> String {
    let seq = acc.map(|a| format!(",\"seq\":{a}")).unwrap_or_default();
    format!(
        "{{\"meter_id\":\"{}\",\"medium\":\"{}\",\"register\":\"{}\",\"unit\":\"{}\",\"value\":\"{}\",\"ts\":\"{}\"{seq}}}",
        m.id,
        m.medium,
        m.register,
        m.unit,
        format_fixed(value, m.decimals),
        crate::time::format_micros(ts)
    )
}

fn message(topic: &str, readings: &[String], at: i64) -> Message {
    let mut payload = Vec::with_capacity(readings.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
    payload.push(b'[');
    for (i, r) in readings.iter().enumerate() {
        if i > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(r.as_bytes());
    }
    payload.push(b']');
    Message {
        topic: topic.to_owned(),
        payload,
        at,
        readings: readings.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    #[test]
    fn the_fleet_is_deterministic_and_decodes() {
        let w = Window {
            from: parse_time("2022-07-23").unwrap(),
            to: parse_time("2022-07-24").unwrap(),
        };
        let start = parse_time("2022-07-22").unwrap();
        let run = |seed| {
            let mut f = Fleet::new(500, seed, start, w);
            let mut msgs = Vec::new();
            let mut t = start + TICK;
            while t <= parse_time("2022-07-25").unwrap() {
                msgs.extend(f.tick(t));
                t += TICK;
            }
            (f.scenario.clone(), msgs)
        };
        let (s, a) = run(7);
        let (_, b) = run(7);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.payload == y.payload));
        assert_eq!(s.gateways, 5);
        assert_eq!(
            (s.buffering_gateways, s.lossy_gateways, s.dead_gateways),
            (1, 1, 1)
        );
        assert!(s.glitching_meter.is_some());
        let cfg = crate::decode::DecodeConfig::default();
        let mut readings = 0;
        for m in &a {
            let d = crate::decode::decode(&m.topic, &m.payload, m.at, &cfg)
                .unwrap_or_else(|r| panic!("{}: {}", m.topic, r.reason));
            assert_eq!(d.readings.len(), m.readings);
            readings += m.readings;
        }
        assert!(readings > 500 * 20, "{readings} readings");
        // Forwarded buffers arrive after the window, stamped late.
        assert!(a.iter().any(|m| m.at > w.to && m.readings > 100));
    }
}
