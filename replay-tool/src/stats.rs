//! `stats`: events by type and by day (UTC), organizations, streams.
//! Every event is chain-checked and decoded from its stored bytes on the way.

use crate::source::{Events, Failure, Range, Source};
use ledger_core::events::{Event, StreamId};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

#[derive(Default)]
pub struct Stats {
    pub events: u64,
    pub by_type: BTreeMap<&'static str, u64>,
    pub by_day: BTreeMap<String, u64>,
    pub organizations: u64,
    pub streams_by_kind: BTreeMap<String, u64>,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

pub fn collect(source: &Source) -> Result<Stats, Failure> {
    let mut events = Events::open(source, Range::ALL, "stats")?;
    let mut stats = Stats::default();
    let mut streams: HashSet<StreamId> = HashSet::new();
    let mut day_of_last: Option<(chrono::NaiveDate, String)> = None;
    let mut last_at = None;
    while let Some((_, event)) = events.next()? {
        stats.events += 1;
        *stats.by_type.entry(event.event.type_name()).or_default() += 1;
        let date = event.at.date();
        let day = match &day_of_last {
            Some((d, s)) if *d == date => s.clone(),
            _ => {
                let s = date.to_string();
                day_of_last = Some((date, s.clone()));
                s
            }
        };
        *stats.by_day.entry(day).or_default() += 1;
        if matches!(event.event, Event::OrganizationCreated { .. }) {
            stats.organizations += 1;
        }
        let stream = event.stream();
        if streams.insert(stream) {
            *stats
                .streams_by_kind
                .entry(format!("{:?}", stream.kind))
                .or_default() += 1;
        }
        if stats.first_at.is_none() {
            stats.first_at = Some(event.at.rfc3339());
        }
        last_at = Some(event.at);
    }
    stats.last_at = last_at.map(|t| t.rfc3339());
    Ok(stats)
}

pub fn run(source: &Source, as_json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let stats = collect(source)?;
    let streams: u64 = stats.streams_by_kind.values().sum();
    if as_json {
        let value = json!({
            "events": stats.events,
            "firstAt": stats.first_at,
            "lastAt": stats.last_at,
            "organizations": stats.organizations,
            "streams": streams,
            "streamsByKind": stats.streams_by_kind,
            "eventsByType": stats.by_type,
            "eventsByDay": stats.by_day,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)?
        )?;
        return Ok(());
    }
    writeln!(out, "events: {}", stats.events)?;
    writeln!(
        out,
        "first event at: {}",
        stats.first_at.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "last event at: {}",
        stats.last_at.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "organizations: {}", stats.organizations)?;
    writeln!(out, "streams: {streams}")?;
    for (kind, n) in &stats.streams_by_kind {
        writeln!(out, "  {kind:<32} {n:>12}")?;
    }
    writeln!(out, "events by type:")?;
    for (kind, n) in &stats.by_type {
        writeln!(out, "  {kind:<32} {n:>12}")?;
    }
    writeln!(out, "events by day (UTC):")?;
    for (day, n) in &stats.by_day {
        writeln!(out, "  {day:<32} {n:>12}")?;
    }
    Ok(())
}
