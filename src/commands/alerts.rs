//! `gapless alerts`: the sealed alerts, as a table or JSON lines.

use super::{usage, CommandError};

/// `gapless alerts`: the sealed alerts, oldest first.
pub fn alerts_command(args: &crate::cli::AlertsArgs) -> Result<String, CommandError> {
    use crate::alerts::{table, AlertKind};
    let kind = args
        .kind
        .as_deref()
        .map(|k| AlertKind::parse_listed(k).map_err(|e| usage(format!("--kind {e}"))))
        .transpose()?;
    let filter = table::AlertFilter {
        open: args.open,
        kind,
        subject: args.subject.clone(),
        from: None,
        to: None,
    };
    if !args.data.is_dir() {
        return Err(crate::report::ReportError::NoData(args.data.clone()).into());
    }
    let told = table::read_told(&args.data).map_err(CommandError::Alerts)?;
    let rows = table::select(&told, &filter);
    let mut out = String::new();
    if args.json {
        for t in rows {
            out.push_str(&t.json);
            out.push('\n');
        }
        return Ok(out);
    }
    out.push_str(&format!(
        "{:>6}  {:<20}  {:<20}  {:<24}  message\n",
        "seq", "raised_at", "kind", "subject"
    ));
    for t in &rows {
        let a = &t.alert;
        out.push_str(&format!(
            "{:>6}  {:<20}  {:<20}  {:<24}  {}\n",
            a.seq,
            crate::time::format_micros(a.raised_at),
            a.kind.as_str(),
            a.subject,
            a.message
        ));
    }
    out.push_str(&format!("{} alerts\n", rows.len()));
    Ok(out)
}
