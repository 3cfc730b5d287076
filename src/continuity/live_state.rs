//! The live engine's state as bytes, for the ingest stage's snapshots:
//! every field but the configuration and the registry (the caller's), and
//! the indices (rebuilt on decode). `decode(encode(x))` is `x`.

use std::collections::HashMap;
use std::sync::Arc;

use hashbrown::HashTable;

use super::{End, Interner, KeptGap, LiveEngine, SeriesSetup, Slot, Warmup};
use crate::codec::{CodecError, Dec, Enc};
use crate::continuity::registry::Registry;
use crate::continuity::series::Point;
use crate::continuity::{ContinuityConfig, Interval, IntervalSource};
use crate::reading::Medium;

fn bad(what: &str) -> CodecError {
    CodecError(format!("live state: {what}"))
}

fn point(e: &mut Enc, p: &Point) {
    e.i64(p.ts);
    e.i128(p.value);
    e.u8(p.decimals);
    e.opt(p.seq, |e, s| e.u64(s));
    e.i64(p.received_at);
}

fn get_point(d: &mut Dec) -> Result<Point, CodecError> {
    Ok(Point {
        ts: d.i64()?,
        value: d.i128()?,
        decimals: d.u8()?,
        seq: d.opt(|d| d.u64())?,
        received_at: d.i64()?,
    })
}

fn setup(e: &mut Enc, s: &SeriesSetup) {
    e.str(s.medium.as_str());
    e.opt(s.interval, |e, i| {
        e.i64(i.micros);
        e.str(i.source.as_str());
    });
    e.u64(s.seq_wrap);
}

fn get_setup(d: &mut Dec) -> Result<SeriesSetup, CodecError> {
    let medium = Medium::parse(d.str()?).ok_or_else(|| bad("medium"))?;
    let interval = d.opt(|d| {
        let micros = d.i64()?;
        let source = IntervalSource::parse(d.str()?).ok_or_else(|| bad("interval source"))?;
        Ok(Interval { micros, source })
    })?;
    Ok(SeriesSetup {
        medium,
        interval,
        seq_wrap: d.u64()?,
    })
}

fn end(e: &mut Enc, x: End) {
    let End {
        ts,
        value,
        seq,
        decimals,
    } = x;
    e.i64(ts);
    e.i64(value);
    e.u32(seq);
    e.u8(decimals);
}

fn get_end(d: &mut Dec) -> Result<End, CodecError> {
    Ok(End {
        ts: d.i64()?,
        value: d.i64()?,
        seq: d.u32()?,
        decimals: d.u8()?,
    })
}

/// Map entries sorted by key, so that equal states give equal bytes.
fn sorted<K: Ord + Copy, V>(m: &HashMap<K, V>) -> Vec<(K, &V)> {
    let mut v: Vec<(K, &V)> = m.iter().map(|(k, v)| (*k, v)).collect();
    v.sort_by_key(|e| e.0);
    v
}

impl LiveEngine {
    /// Appends the state to `e`.
    pub fn encode(&self, e: &mut Enc) {
        e.bytes(&self.arena);
        e.len(self.registers.values.len());
        for r in &self.registers.values {
            e.str(r);
        }
        e.len(self.profiles.values.len());
        for p in &self.profiles.values {
            setup(e, p);
        }
        let own = sorted(&self.own);
        e.len(own.len());
        for (i, s) in own {
            e.u32(i);
            setup(e, s);
        }
        e.len(self.slots.len());
        for s in &self.slots {
            let Slot {
                first,
                last,
                meter,
                register,
                profile,
            } = *s;
            end(e, first);
            end(e, last);
            e.u32(meter);
            e.u16(register);
            e.u16(profile);
        }
        let gaps = sorted(&self.gaps);
        e.len(gaps.len());
        for (i, gs) in gaps {
            e.u32(i);
            e.len(gs.len());
            for g in gs {
                g.encode(e);
            }
        }
        let warm = sorted(&self.warmup);
        e.len(warm.len());
        for (i, w) in warm {
            e.u32(i);
            e.len(w.points.len());
            for p in &w.points {
                point(e, p);
            }
            let (entries, max) = w.first.parts();
            e.len(entries.len());
            for &((seq, idx), ts) in entries {
                e.u64(seq);
                e.u32(idx);
                e.i64(ts);
            }
            e.u64(max.0);
            e.u32(max.1);
            e.bool(w.ripe);
        }
        e.len(self.ripe.len());
        for &i in &self.ripe {
            e.u32(i);
        }
        let wide = sorted(&self.wide);
        e.len(wide.len());
        for (i, &(a, b)) in wide {
            e.u32(i);
            e.i128(a);
            e.i128(b);
        }
        let mut days: Vec<(&str, &Vec<i64>)> =
            self.set_days.iter().map(|(m, d)| (&**m, d)).collect();
        days.sort_by_key(|e| e.0);
        e.len(days.len());
        for (m, ds) in days {
            e.str(m);
            e.len(ds.len());
            for &d in ds {
                e.i64(d);
            }
        }
        // Taken after a seal: nothing is unsealed.
        debug_assert!(self.unsealed.is_empty());
        e.i64(self.horizon);
        e.i64(self.newest_received);
    }

    /// The state `encode` wrote, judged with `cfg` and `registry`.
    pub fn decode(
        cfg: ContinuityConfig,
        registry: Arc<Registry>,
        d: &mut Dec,
    ) -> Result<LiveEngine, CodecError> {
        let arena = d.bytes()?.to_vec();
        let mut registers = Interner::new();
        for _ in 0..d.len(8)? {
            let r = d.str()?.to_owned();
            registers
                .ids
                .insert(r.clone(), registers.values.len() as u16);
            registers.values.push(r);
        }
        let mut profiles = Interner::new();
        for _ in 0..d.len(8)? {
            let p = get_setup(d)?;
            profiles.ids.insert(p, profiles.values.len() as u16);
            profiles.values.push(p);
        }
        let mut own = HashMap::new();
        for _ in 0..d.len(12)? {
            own.insert(d.u32()?, get_setup(d)?);
        }
        let n = d.len(50)?;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let first = get_end(d)?;
            let last = get_end(d)?;
            let meter = d.u32()?;
            let register = d.u16()?;
            let profile = d.u16()?;
            let id_ok = (meter as usize) < arena.len()
                && meter as usize + 1 + arena[meter as usize] as usize <= arena.len();
            if !id_ok || register as usize >= registers.values.len().max(1) {
                return Err(bad("a series' meter or register is out of range"));
            }
            slots.push(Slot {
                first,
                last,
                meter,
                register,
                profile,
            });
        }
        let mut gaps = HashMap::new();
        for _ in 0..d.len(12)? {
            let i = d.u32()?;
            let k = d.len(KeptGap::ENCODED)?;
            let mut v = Vec::with_capacity(k);
            for _ in 0..k {
                v.push(KeptGap::decode(d)?);
            }
            gaps.insert(i, v);
        }
        let mut warmup = HashMap::new();
        for _ in 0..d.len(12)? {
            let i = d.u32()?;
            let k = d.len(40)?;
            let mut points = Vec::with_capacity(k);
            for _ in 0..k {
                points.push(get_point(d)?);
            }
            let k = d.len(20)?;
            let mut entries = Vec::with_capacity(k);
            for _ in 0..k {
                entries.push(((d.u64()?, d.u32()?), d.i64()?));
            }
            let max = (d.u64()?, d.u32()?);
            let first = crate::continuity::interval::FirstReceived::from_parts(entries, max);
            let ripe = d.bool()?;
            warmup.insert(
                i,
                Warmup {
                    points,
                    first,
                    ripe,
                },
            );
        }
        let mut ripe = Vec::new();
        for _ in 0..d.len(4)? {
            ripe.push(d.u32()?);
        }
        let mut wide = HashMap::new();
        for _ in 0..d.len(36)? {
            wide.insert(d.u32()?, (d.i128()?, d.i128()?));
        }
        let mut set_days = HashMap::new();
        for _ in 0..d.len(16)? {
            let m: Box<str> = d.str()?.into();
            let k = d.len(8)?;
            let mut v = Vec::with_capacity(k);
            for _ in 0..k {
                v.push(d.i64()?);
            }
            set_days.insert(m, v);
        }
        let (horizon, newest_received) = (d.i64()?, d.i64()?);
        let oldest_to = gaps
            .iter()
            .filter(|(i, _)| !warmup.contains_key(*i))
            .filter_map(|(_, v): (_, &Vec<KeptGap>)| v.first().map(|g| g.to()))
            .min()
            .unwrap_or(i64::MAX);
        let mut live = LiveEngine {
            cfg,
            registry,
            arena,
            registers,
            profiles,
            own,
            slots,
            index: HashTable::new(),
            gaps,
            warmup,
            ripe,
            wide,
            set_days,
            horizon,
            newest_received,
            oldest_to,
            gap_memory: i64::MAX,
            unsealed: HashMap::new(),
            lookup_bound: None,
            lookups: 0,
        };
        live.reindex();
        Ok(live)
    }
}
