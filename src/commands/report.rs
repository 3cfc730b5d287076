//! `gapless report`: the outage report of a window (and its estimates, or
//! the certificate), written under DATA/reports/.

use super::{parse_medium_flag, parse_time_flag, usage, CommandError};

/// `gapless report`: evaluates the window, writes the report (and estimates)
/// under DATA/reports/, and returns what to print.
pub fn report_command(args: &crate::cli::ReportArgs, now: i64) -> Result<String, CommandError> {
    use crate::cli::ReportFormat;
    use crate::report;
    let q = &args.query;
    let from = parse_time_flag("--from", &args.from)?;
    let to = parse_time_flag("--to", &args.to)?;
    if to <= from {
        return Err(usage("--to must be after --from"));
    }
    if args.group.is_some() && args.format != ReportFormat::Html {
        return Err(usage("--group goes with --format html (the certificate)"));
    }
    let status = args
        .status
        .as_deref()
        .map(|s| {
            crate::continuity::window::Status::parse(s).ok_or_else(|| {
                usage(format!(
                    "--status {s:?}: not one of anomalous, silent, open, bridged, complete"
                ))
            })
        })
        .transpose()?;
    let filter = report::ReportFilter {
        medium: parse_medium_flag(q.medium.as_deref())?,
        status,
    };
    let (ctx, ctx_key) =
        crate::config::query_context(q.config.as_deref(), q.registry.as_deref()).map_err(usage)?;
    let ctx_key = args.audit_key.clone().or(ctx_key);
    if let Some(g) = &args.group {
        // Before anything is written: a group only the registry names.
        if !crate::report::certificate::is_registry_group(&ctx, g) {
            return Err(usage(format!(
                "--group {g:?}: no meter of the registry is in this group"
            )));
        }
    }
    let stored = report::StoredReadings::load(&q.data)?;
    // Each pass (the report, the estimates, the certificate) reads every
    // row once; the bar is cleared when this returns, before the output.
    let passes = 1 + u64::from(args.estimate) + u64::from(args.format == ReportFormat::Html);
    let bar = crate::progress::Progress::new("report", stored.len() as u64 * passes, "readings");
    let stored = stored.with_progress(bar.counter());
    let window = crate::continuity::window::Window { from, to };
    let rep = report::outage_report(&stored, &ctx, window, &filter)?;
    let est = if args.estimate {
        Some(report::estimates(&stored, &ctx, window)?)
    } else {
        None
    };
    let written =
        report::write_report_parquet(&q.data, &rep, est.as_deref(), now, ctx_key.as_deref())?;
    Ok(match args.format {
        ReportFormat::Table => {
            let mut s = report::report_table(&rep);
            for p in &written {
                s.push_str(&format!("\nwritten: {}", p.display()));
            }
            s.push('\n');
            s
        }
        ReportFormat::Json => {
            let mut v = report::report_json(&rep);
            v.files = written.iter().map(|p| p.display().to_string()).collect();
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ReportFormat::Csv => report::report_csv(&rep),
        ReportFormat::Parquet => written
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect(),
        ReportFormat::Html => crate::report::certificate_document(
            &q.data,
            &stored,
            &ctx,
            window,
            crate::report::certificate::CertificateRequest {
                filter,
                group: args.group.clone(),
                audit_key: ctx_key,
                report_files: written,
            },
            now,
        )
        .map_err(|e| match e {
            crate::report::certificate::CertificateError::NoSuchGroup(_) => {
                usage(format!("--group: {e}"))
            }
            crate::report::certificate::CertificateError::Window(_) => usage(format!("--to: {e}")),
            e => CommandError::Certificate(e),
        })?,
    })
}
