use super::*;
use crate::continuity::registry::Registry;
use std::sync::Arc;

const MIN: i64 = 60 * SECOND;
const T0: i64 = 28_333_333 * MIN;

fn engine(group_min: usize) -> AlertEngine {
    let cfg = AlertConfig {
        group_min,
        startup_grace_s: 0,
        ..AlertConfig::default()
    };
    let mut ctx = Context::default();
    ctx.config.intervals_s.insert(Medium::Heat, 900);
    AlertEngine::new(cfg, ctx)
}

/// An alert with nothing but its number, kind and subject.
pub(crate) fn bare_alert(seq: u64, kind: AlertKind, subject: &str) -> Alert {
    Alert {
        seq,
        kind,
        subject: subject.to_owned(),
        raised_at: 0,
        meter_id: None,
        group: None,
        closes: None,
        last_reading_at: None,
        deadline: None,
        gap: None,
        count: None,
        members: vec![],
        message: String::new(),
    }
}

fn kinds(e: &mut AlertEngine) -> Vec<(AlertKind, String)> {
    e.take().into_iter().map(|a| (a.kind, a.subject)).collect()
}

fn feed(e: &mut AlertEngine, meter: &str, topic: &str, from: i64, to: i64) {
    let mut t = from;
    while t <= to {
        e.reading(
            meter,
            Medium::Heat,
            false,
            t,
            crate::ingest::alerts::topic_group(topic),
            t + SECOND,
        );
        t += 15 * MIN;
    }
}

/// Meters M0..Mn of group `site/b1`, every 15 minutes for an hour.
fn feed_site(e: &mut AlertEngine, n: usize) {
    for m in 0..n {
        let (meter, topic) = (format!("M{m}"), format!("site/b1/M{m}"));
        feed(e, &meter, &topic, T0, T0 + 60 * MIN);
    }
}

#[test]
fn a_silent_meter_is_alerted_once_and_resumes_once() {
    let mut e = engine(20);
    feed(&mut e, "HZ-1", "meters/HZ-1", T0, T0 + 60 * MIN);
    let last = T0 + 60 * MIN;
    e.tick(last + 44 * MIN);
    assert!(kinds(&mut e).is_empty(), "not yet due");
    e.tick(last + 45 * MIN);
    let a = e.take();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, AlertKind::MeterSilent);
    assert_eq!(a[0].last_reading_at, Some(last));
    assert_eq!(a[0].deadline, Some(last + 45 * MIN));
    for m in 46..300 {
        e.tick(last + m * MIN);
    }
    assert!(kinds(&mut e).is_empty(), "no repeats while silent");
    // Back: resuming waits for the seal's gap.
    let back = last + 5 * 60 * MIN;
    assert!(e.reading(
        "HZ-1",
        Medium::Heat,
        false,
        back,
        crate::ingest::alerts::topic_group("meters/HZ-1"),
        back
    ));
    let cfg = ContinuityConfig::default();
    let g = crate::continuity::series::tests::rules(&cfg, Medium::Heat, 15);
    let gap = crate::continuity::series::gap_between(
        &crate::continuity::series::tests::p(last / MIN, 10),
        &crate::continuity::series::tests::p(back / MIN, 12),
        &g,
    )
    .unwrap();
    e.finish_resumes([("HZ-1", "energy", &gap)], back);
    let a = e.take();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, AlertKind::MeterResumed);
    assert_eq!(a[0].closes, Some(1));
    let gap = a[0].gap.as_ref().unwrap();
    assert_eq!((gap.from, gap.to, gap.missing), (last, back, 19));
    assert_eq!(gap.consumption_exact, Some(true));
    // Reporting on: no more alerts, and due again later.
    feed(
        &mut e,
        "HZ-1",
        "meters/HZ-1",
        back + 15 * MIN,
        back + 60 * MIN,
    );
    e.tick(back + 100 * MIN);
    assert!(kinds(&mut e).is_empty());
    e.tick(back + 105 * MIN);
    assert_eq!(kinds(&mut e), vec![(AlertKind::MeterSilent, "HZ-1".into())]);
}

use crate::continuity::ContinuityConfig;

#[test]
fn a_late_buffered_reading_does_not_resume_a_silent_meter() {
    let mut e = engine(20);
    feed(&mut e, "HZ-1", "t", T0, T0);
    e.tick(T0 + 46 * MIN);
    assert_eq!(kinds(&mut e).len(), 1);
    // A reading from long ago arrives now: still silent.
    let now = T0 + 10 * 60 * MIN;
    assert!(!e.reading(
        "HZ-1",
        Medium::Heat,
        false,
        T0 + 15 * MIN,
        crate::ingest::alerts::topic_group("t"),
        now
    ));
    e.finish_resumes([], now);
    e.tick(now);
    assert!(kinds(&mut e).is_empty());
}

#[test]
fn fifty_meters_of_a_group_make_one_group_alert() {
    let mut e = engine(20);
    // 50 meters behind one gateway, readings spread over the interval;
    // 10 meters elsewhere keep reporting.
    for m in 0..50 {
        let phase = m * 15 * MIN / 50;
        feed(
            &mut e,
            &format!("HZ-{m:02}"),
            &format!("meters/gw-1/HZ-{m:02}"),
            T0 + phase,
            T0 + 2 * 60 * MIN,
        );
    }
    let dead = T0 + 2 * 60 * MIN + 15 * MIN;
    for t in (0..=12 * 60).step_by(1) {
        let now = dead + t * MIN;
        for m in 0..10 {
            if t % 15 == 0 {
                e.reading(
                    &format!("W-{m}"),
                    Medium::Heat,
                    false,
                    now,
                    crate::ingest::alerts::topic_group(&format!("meters/gw-2/W-{m}")),
                    now,
                );
            }
        }
        e.tick(now);
    }
    let a = e.take();
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].kind, AlertKind::GroupSilent);
    assert_eq!(a[0].subject, "meters/gw-1");
    assert_eq!(a[0].count, Some(50));
    assert_eq!(a[0].members.len(), 50);
    assert_eq!(e.stats().open_group_silent, 1);
    // The gateway comes back: one group_resumed, no meter alerts.
    let back = dead + 12 * 60 * MIN + 20 * MIN;
    for m in 0..50 {
        let now = back + m * SECOND;
        assert!(!e.reading(
            &format!("HZ-{m:02}"),
            Medium::Heat,
            false,
            now,
            crate::ingest::alerts::topic_group(&format!("meters/gw-1/HZ-{m:02}")),
            now
        ));
        e.tick(now);
    }
    let a = e.take();
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].kind, AlertKind::GroupResumed);
    assert_eq!(a[0].closes, Some(1));
    assert_eq!(a[0].count, Some(50));
    assert_eq!(e.stats().open_group_silent, 0);
}

#[test]
fn a_partly_recovered_group_hands_its_silent_meters_over() {
    let mut e = engine(5);
    feed_site(&mut e, 10);
    let t = T0 + 60 * MIN + 45 * MIN;
    e.tick(t);
    assert_eq!(
        kinds(&mut e),
        vec![(AlertKind::GroupSilent, "site/b1".into())]
    );
    // Seven come back and report on; three stay silent.
    for k in 0..4 {
        let now = t + MIN + k * 15 * MIN;
        for m in 0..7 {
            let (id, topic) = (format!("M{m}"), format!("site/b1/M{m}"));
            e.reading(
                &id,
                Medium::Heat,
                false,
                now,
                crate::ingest::alerts::topic_group(&topic),
                now,
            );
        }
        if k == 2 {
            e.tick(now);
            assert!(kinds(&mut e).is_empty(), "settling");
        }
    }
    e.tick(t + 46 * MIN);
    let k = kinds(&mut e);
    assert_eq!(k[0], (AlertKind::GroupResumed, "site/b1".into()));
    assert_eq!(
        k[1..].to_vec(),
        vec![
            (AlertKind::MeterSilent, "M7".into()),
            (AlertKind::MeterSilent, "M8".into()),
            (AlertKind::MeterSilent, "M9".into())
        ]
    );
}

#[test]
fn one_silent_meter_in_a_busy_group_is_alerted_alone() {
    let mut e = engine(5);
    feed_site(&mut e, 30);
    // M0 dies; the others go on (one missed telegram here and there).
    let mut t = T0 + 75 * MIN;
    while t < T0 + 4 * 60 * MIN {
        for m in 1..30 {
            if (t / MIN + m) % 7 != 0 {
                e.reading(
                    &format!("M{m}"),
                    Medium::Heat,
                    false,
                    t,
                    crate::ingest::alerts::topic_group(&format!("site/b1/M{m}")),
                    t,
                );
            }
        }
        e.tick(t);
        t += 15 * MIN;
    }
    assert_eq!(kinds(&mut e), vec![(AlertKind::MeterSilent, "M0".into())]);
}

#[test]
fn never_seen_registry_meters_and_their_first_reading() {
    let (later, gone) = (format_micros(T0 + 600 * MIN), format_micros(T0 + 120 * MIN));
    let reg = Registry::parse(&format!(
        "meter_id,medium,expected_interval_s,group,installed_at,removed_at\nR-1,water,3600,,,\nR-2,water,3600,,,2020-01-01\nR-3,water,3600,,{later},\nR-4,water,3600,,,{gone}\n",
    ))
    .unwrap();
    let ctx = Context {
        registry: Arc::new(reg),
        ..Context::default()
    };
    let mut e = AlertEngine::new(AlertConfig::default(), ctx);
    e.track_registry(T0);
    // R-2 was removed in 2020: neither never seen nor silent.
    e.tick(T0 + 3 * 60 * MIN - SECOND);
    assert!(kinds(&mut e).is_empty());
    e.tick(T0 + 3 * 60 * MIN);
    assert_eq!(
        kinds(&mut e),
        vec![(AlertKind::MeterNeverSeen, "R-1".into())]
    );
    // R-4 reported, then was removed before it became due: not silent.
    e.reading("R-4", Medium::Water, false, T0, None, T0);
    e.tick(T0 + 4 * 60 * MIN);
    assert!(kinds(&mut e).is_empty());
    // R-3, installed at T0 + 10 h, is judged from then.
    e.tick(T0 + 13 * 60 * MIN - SECOND);
    assert!(kinds(&mut e).is_empty());
    e.tick(T0 + 13 * 60 * MIN);
    assert_eq!(
        kinds(&mut e),
        vec![(AlertKind::MeterNeverSeen, "R-3".into())]
    );
    e.tick(T0 + 30 * 60 * MIN);
    assert!(kinds(&mut e).is_empty());
    let now = T0 + 31 * 60 * MIN;
    e.reading(
        "R-1",
        Medium::Water,
        false,
        now,
        crate::ingest::alerts::topic_group("w/R-1"),
        now,
    );
    let a = e.take();
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].kind, a[0].closes), (AlertKind::MeterResumed, Some(1)));
}

#[test]
fn restore_keeps_silence_and_does_not_repeat_it() {
    let mut e = engine(20);
    feed(&mut e, "HZ-1", "t/x/HZ-1", T0, T0 + 60 * MIN);
    feed(&mut e, "HZ-2", "t/x/HZ-2", T0, T0 + 60 * MIN);
    e.tick(T0 + 2 * 60 * MIN);
    let told = e.take();
    assert_eq!(told.len(), 2);
    // A new process: sealed readings, then what was told.
    let mut e2 = engine(20);
    e2.observe_sealed("HZ-1", Medium::Heat, false, T0 + 60 * MIN);
    e2.observe_sealed("HZ-2", Medium::Heat, false, T0 + 60 * MIN);
    e2.restore(&told, T0 + 3 * 60 * MIN);
    e2.tick(T0 + 3 * 60 * MIN);
    assert!(kinds(&mut e2).is_empty(), "no duplicate meter_silent");
    let now = T0 + 4 * 60 * MIN;
    assert!(e2.reading(
        "HZ-1",
        Medium::Heat,
        false,
        now,
        crate::ingest::alerts::topic_group("t/x/HZ-1"),
        now
    ));
    e2.finish_resumes([], now);
    let a = e2.take();
    assert_eq!(
        (a[0].kind, a[0].closes, a[0].seq),
        (AlertKind::MeterResumed, Some(1), 3)
    );
}

#[test]
fn events_are_quiet_for_a_while_and_bursts_open_and_close() {
    let mut e = engine(20);
    e.conflict("HZ-1", "energy", T0, "5", T0);
    e.conflict("HZ-1", "energy", T0 + MIN, "6", T0 + MIN);
    e.regression("HZ-1", "energy", (T0, "5"), (T0 + MIN, "4"), T0 + MIN);
    assert_eq!(
        kinds(&mut e),
        vec![
            (AlertKind::ReadingConflict, "HZ-1".into()),
            (AlertKind::RegisterRegression, "HZ-1".into())
        ]
    );
    e.conflict("HZ-1", "energy", T0 + 61 * MIN, "7", T0 + 61 * MIN);
    assert_eq!(kinds(&mut e).len(), 1, "after the quiet time, again");
    for n in 0..150 {
        e.rejection(
            "bad/topic",
            "timestamp is more than 86400 s ahead",
            n == 0,
            T0 + n * SECOND / 10,
        );
    }
    assert_eq!(
        kinds(&mut e),
        vec![
            (AlertKind::ClockSkew, "bad/topic".into()),
            (AlertKind::RejectBurst, "rejections".into())
        ]
    );
    e.tick(T0 + 30 * SECOND);
    assert!(kinds(&mut e).is_empty(), "still within the window");
    e.tick(T0 + 80 * SECOND);
    assert_eq!(
        kinds(&mut e),
        vec![(AlertKind::RejectBurstEnded, "rejections".into())]
    );
}

#[test]
fn nothing_due_is_one_peek() {
    let mut e = engine(20);
    for m in 0..1000 {
        e.reading(
            &format!("M{m}"),
            Medium::Heat,
            false,
            T0,
            crate::ingest::alerts::topic_group("x"),
            T0,
        );
    }
    let before = e.heap.len();
    e.tick(T0 + MIN);
    assert_eq!(e.heap.len(), before);
    assert!(kinds(&mut e).is_empty());
}
