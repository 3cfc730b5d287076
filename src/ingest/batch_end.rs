//! The end of a batch: its readings sorted as the files are written, and
//! the live continuity pass over them (the `gaps` rows, the alerts it
//! raises).

use super::*;

/// The 16 first bytes of `s`, big-endian, zero-padded: ordered as `s` is,
/// except that strings equal in them but longer tie.
fn prefix_key(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// The order of a batch's readings: prefix keys of meter and register,
/// time, receipt and position in it.
pub(super) type SortKey = (u128, u128, i64, u64, u32);

/// A batch's readings sorted by meter, register, time and receipt (how
/// each file is written, so that the continuity pass and the lookups can
/// stream files without re-sorting them). Sorted by integer keys (the
/// first 16 bytes of meter and register, padded with zeros, which no
/// meter id or register contains); the rare runs that tie on a prefix
/// while one of them is longer are sorted again by the whole strings.
pub(super) fn sorted_by_series<'a>(
    rows: &'a [ReadingRow],
    keyed: &mut Vec<(SortKey, usize)>,
) -> Vec<&'a ReadingRow> {
    let key = |r: &ReadingRow| {
        (
            prefix_key(r.reading.meter_id.as_str()),
            prefix_key(&r.reading.register),
            r.reading.ts_micros,
            r.receipt_seq,
            r.reading_index,
        )
    };
    keyed.clear();
    keyed.extend(rows.iter().enumerate().map(|(i, r)| (key(r), i)));
    keyed.sort_unstable_by_key(|(k, _)| *k);
    let mut out: Vec<&ReadingRow> = keyed.iter().map(|&(_, i)| &rows[i]).collect();
    let full = |a: &&ReadingRow, b: &&ReadingRow| {
        (
            a.reading.meter_id.as_str(),
            &a.reading.register,
            a.reading.ts_micros,
            a.receipt_seq,
            a.reading_index,
        )
            .cmp(&(
                b.reading.meter_id.as_str(),
                &b.reading.register,
                b.reading.ts_micros,
                b.receipt_seq,
                b.reading_index,
            ))
    };
    let long =
        |r: &ReadingRow| r.reading.meter_id.as_str().len() > 16 || r.reading.register.len() > 16;
    if out.iter().any(|r| long(r)) {
        // Runs of one meter prefix that hold a long name: by the whole key.
        let mut i = 0;
        while i < out.len() {
            let p = prefix_key(out[i].reading.meter_id.as_str());
            let mut j = i + 1;
            while j < out.len() && prefix_key(out[j].reading.meter_id.as_str()) == p {
                j += 1;
            }
            if out[i..j].iter().any(|r| long(r)) {
                out[i..j].sort_unstable_by(full);
            }
            i = j;
        }
    }
    out
}

/// Runs the live continuity engine over a batch of readings (sorted by
/// series and time) and returns the `gaps` rows it produced: first the set
/// dates the batch reports (so that a reset sent with its set date is
/// explained), then the measured readings, then the series whose interval
/// the batch let the engine infer ([`LiveEngine::settle`]).
pub(super) fn find_gaps(
    live: &mut LiveEngine,
    alerts: &mut AlertEngine,
    ctx: &Context,
    readings: &[&ReadingRow],
    now: i64,
    sealed: &mut dyn SealedSeries,
) -> Result<Vec<GapRow>, LookupError> {
    let mut out = Vec::new();
    for r in readings
        .iter()
        .filter(|r| r.reading.kind == ReadingKind::SetDate)
    {
        let rd = &r.reading;
        let day = rd.ts_micros.div_euclid(crate::continuity::DAY);
        for (register, change) in live.set_day(rd.meter_id.as_str(), day, sealed)? {
            let source = live
                .interval(rd.meter_id.as_str(), &register)
                .map_or(IntervalSource::Default, |i| i.source);
            if let GapChange::Split { old, parts } = change {
                let row = gap_row(
                    rd.meter_id.as_str(),
                    &register,
                    rd.medium,
                    source,
                    (r.receipt_seq, r.received_at),
                );
                out.push(row(GapEvent::Superseded, old));
                out.extend(parts.into_iter().map(|g| row(GapEvent::Found, g)));
            }
        }
    }
    for r in readings
        .iter()
        .filter(|r| is_series_reading(r.reading.kind, r.conflict))
    {
        let rd = &r.reading;
        let (meter, register) = (rd.meter_id.as_str(), rd.register.as_str());
        let lora = matches!(r.format, Format::Chirpstack | Format::Tts);
        let point = Point {
            ts: rd.ts_micros,
            value: rd.value.scaled(),
            decimals: fraction_digits(rd.value.as_str()),
            seq: rd.seq,
            received_at: r.received_at,
        };
        let changes = live.observe(
            meter,
            register,
            || ctx.setup(meter, rd.medium, lora),
            point,
            (r.receipt_seq, r.reading_index),
            sealed,
        )?;
        if changes.is_empty() {
            continue;
        }
        let source = live
            .interval(meter, register)
            .map_or(IntervalSource::Default, |i| i.source);
        let row = gap_row(
            meter,
            register,
            rd.medium,
            source,
            (r.receipt_seq, r.received_at),
        );
        for c in changes {
            match c {
                GapChange::Found(g) => out.push(row(GapEvent::Found, g)),
                GapChange::Split { old, parts } => {
                    out.push(row(GapEvent::Superseded, old));
                    out.extend(parts.into_iter().map(|g| row(GapEvent::Found, g)));
                }
                GapChange::Decrease { before, after } => {
                    let (b, a) = (
                        crate::reading::format_fixed(before.value, before.decimals),
                        crate::reading::format_fixed(after.value, after.decimals),
                    );
                    alerts.regression(meter, register, (before.ts, &b), (after.ts, &a), now);
                }
            }
        }
    }
    for s in live.settle() {
        alerts.interval_inferred(&s.meter, s.interval.micros);
        let cause = (s.cause.0, s.cause_received_at);
        // The gaps judged meanwhile were judged with the built-in interval.
        let old = gap_row(
            &s.meter,
            &s.register,
            s.medium,
            IntervalSource::Default,
            cause,
        );
        out.extend(s.old.iter().map(|g| old(GapEvent::Superseded, g.clone())));
        let new = gap_row(&s.meter, &s.register, s.medium, s.interval.source, cause);
        out.extend(s.new.iter().map(|g| new(GapEvent::Found, g.clone())));
    }
    Ok(out)
}

/// The `gaps` rows of one series' change, all with the same cause.
fn gap_row<'a>(
    meter: &'a str,
    register: &'a str,
    medium: crate::reading::Medium,
    source: IntervalSource,
    (receipt_seq, detected_at): (u64, i64),
) -> impl Fn(GapEvent, crate::continuity::series::Gap) -> GapRow + 'a {
    move |event, gap| GapRow {
        meter_id: meter.to_owned(),
        register: register.to_owned(),
        medium,
        event,
        gap,
        interval_source: source,
        receipt_seq,
        detected_at,
    }
}
