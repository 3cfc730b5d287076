//! The ingest stage's unit tests.
use super::*;
use crate::journal::JournalRecord;

fn message(seq: u64, meter: &str, registers: impl Iterator<Item = String>) -> JournalRecord {
    let items: Vec<String> = registers
        .map(|r| {
            format!(
                r#"{{"meter_id":"{meter}","medium":"heat","register":"{r}","unit":"kWh","value":"1","ts":"2022-07-25T00:00:00Z"}}"#
            )
        })
        .collect();
    JournalRecord {
        seq,
        received_at: 1_700_000_000_000_000,
        topic: "meters/t".into(),
        payload: format!("[{}]", items.join(",")).into_bytes().into(),
    }
}

/// The batch is sealed sorted by meter, register, time and receipt,
/// whole strings compared, with names longer than the 16 bytes the
/// integer keys hold.
#[test]
fn a_batch_is_sorted_by_the_whole_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Ingest::new(
        IngestConfig::historic(usize::MAX),
        dir.path(),
        Box::new(dedup::NoSealed),
    );
    let meters = [
        "M-2",
        "M-10",
        "AAAAAAAAAAAAAAAAB",
        "AAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAB",
    ];
    let regs = [
        "r",
        "q",
        "register_name_over_16_b",
        "register_name_over_16_a",
        "register_name_over_16",
    ];
    let mut seq = 0;
    for k in 0..3 {
        for m in meters.iter().rev() {
            seq += 1;
            let rs = regs.iter().skip(k).map(|r| r.to_string());
            s.ingest(&message(seq, m, rs)).unwrap();
        }
    }
    let got: Vec<(String, String, u64)> = s
        .finish()
        .unwrap()
        .readings
        .iter()
        .map(|r| {
            let rd = &r.reading;
            (
                rd.meter_id.as_str().to_owned(),
                rd.register.clone(),
                r.receipt_seq,
            )
        })
        .collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got.len(), 7 * 5, "each (meter, register) once: {got:?}");
    assert_eq!(got, want);
}

/// Past 65,535 distinct register names in the fleet (each meter within
/// its own bound), a message with a new name is rejected with its
/// reason, not given a shared slot; known names go on.
#[test]
fn the_fleet_s_register_names_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Ingest::new(
        IngestConfig::historic(usize::MAX),
        dir.path(),
        Box::new(dedup::NoSealed),
    );
    let mut seq = 0;
    let mut name = 0u32;
    for m in 0..1024 {
        let n = (u16::MAX as u32 - name).min(64);
        seq += 1;
        let regs = (name..name + n).map(|k| format!("r{k}"));
        s.ingest(&message(seq, &format!("M-{m}"), regs)).unwrap();
        name += n;
    }
    assert_eq!(name, u16::MAX as u32);
    let rejected = |s: &Ingest| {
        s.batch()
            .receipts
            .iter()
            .filter(|r| r.disposition == Disposition::Rejected)
            .count()
    };
    assert_eq!(rejected(&s), 0, "65,535 names fit");
    seq += 1;
    s.ingest(&message(seq, "N-1", std::iter::once("another".to_string())))
        .unwrap();
    seq += 1;
    s.ingest(&message(seq, "N-2", std::iter::once("r7".to_string())))
        .unwrap();
    let r = &s.batch().receipts;
    assert_eq!(r[r.len() - 2].disposition, Disposition::Rejected);
    assert!(
        r[r.len() - 2]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("65,535"),
        "{:?}",
        r[r.len() - 2].reason
    );
    assert_eq!(
        r[r.len() - 1].disposition,
        Disposition::Stored,
        "a known name"
    );
}
