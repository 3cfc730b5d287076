//! `gapless gaps`: the gaps of the stored readings.

use super::{parse_medium_flag, parse_time_flag, usage, CommandError};

/// `gapless gaps`: the gaps of the stored readings.
pub fn gaps_command(args: &crate::cli::GapsArgs, now: i64) -> Result<String, CommandError> {
    use crate::cli::GapsFormat;
    use crate::report;
    let q = &args.query;
    let filter = report::GapFilter {
        meter: args.meter.clone(),
        from: args
            .from
            .as_deref()
            .map(|s| parse_time_flag("--from", s))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|s| parse_time_flag("--to", s))
            .transpose()?,
        only_open: args.open,
        medium: parse_medium_flag(q.medium.as_deref())?,
    };
    let (ctx, _) =
        crate::config::query_context(q.config.as_deref(), q.registry.as_deref()).map_err(usage)?;
    let stored = report::StoredReadings::load(&q.data)?;
    let rows = report::gaps(&stored, &ctx, &filter, now)?;
    Ok(match args.format {
        GapsFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report::gaps_json(&rows)).unwrap_or_default()
        ),
        GapsFormat::Csv => report::gaps_text(&rows, true),
        GapsFormat::Table => report::gaps_text(&rows, false),
    })
}
