//! `export --format jsonl|csv [--from-seq N] [--to-seq N] [--org ID] [--type PATTERN]`:
//! events streamed to stdout as they are read, decoded from their stored bytes.
//!
//! JSON lines carry the admin stream's fields (`seq, version, stream, at,
//! actor, requestId, type, data`) and the chain `hash`. CSV has one column per
//! envelope field and the payload as a JSON string in `data`.
//!
//! The chain is checked from the first event exported (anchored on the stored
//! hash of the one before it); `verify` proves it from genesis. `--org` needs
//! to know who owns what, so it folds the log from the start (re-checking the
//! invariants as it goes) and exports the events concerning that
//! organization: those naming it, and those on its invoices (as seller or
//! buyer, drafts included), payments, balances, withdrawals, refunds, keys,
//! connections, webhook endpoints and files.

use crate::describe::{event_data, event_json, organizations, stream_kind};
use crate::source::{Events, Failure, Range, Raw, Source};
use ledger_core::domain::Ledger;
use ledger_core::events::{Actor, RecordedEvent};
use ledger_core::ids::OrganizationId;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// `InvoiceCreated`, or a prefix ending in `*` (`Invoice*`); several may be
/// given separated by commas.
#[derive(Debug, Clone)]
pub struct TypePattern(Vec<(String, bool)>);

impl TypePattern {
    pub fn parse(s: &str) -> TypePattern {
        TypePattern(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.strip_suffix('*') {
                    Some(prefix) => (prefix.to_string(), true),
                    None => (p.to_string(), false),
                })
                .collect(),
        )
    }

    pub fn matches(&self, type_name: &str) -> bool {
        self.0.iter().any(|(p, prefix)| {
            if *prefix {
                type_name.starts_with(p.as_str())
            } else {
                type_name == p
            }
        })
    }
}

pub struct Filter {
    pub from_seq: u64,
    pub to_seq: Option<u64>,
    pub org: Option<OrganizationId>,
    pub types: Option<TypePattern>,
}

const CSV_HEADER: [&str; 12] = [
    "seq",
    "version",
    "at",
    "type",
    "streamKind",
    "streamId",
    "actor",
    "actorOrganizationId",
    "actorApiKeyId",
    "requestId",
    "data",
    "hash",
];

fn csv_row(raw: Raw<'_>, e: &RecordedEvent) -> [String; 12] {
    let (actor, org, key) = match e.actor {
        Actor::System => ("system".to_string(), String::new(), String::new()),
        Actor::Admin => ("admin".to_string(), String::new(), String::new()),
        Actor::ApiKey {
            organization_id,
            api_key_id,
        } => (
            "apiKey".to_string(),
            organization_id.to_string(),
            api_key_id.to_string(),
        ),
    };
    [
        e.seq.to_string(),
        e.version.to_string(),
        e.at.rfc3339(),
        e.event.type_name().to_string(),
        stream_kind(e),
        e.stream().id.to_string(),
        actor,
        org,
        key,
        e.request_id.map(|r| r.to_string()).unwrap_or_default(),
        event_data(&e.event).to_string(),
        hex::encode(raw.hash),
    ]
}

enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write, Vec<u8>),
}

pub fn run(
    source: &Source,
    format: Format,
    filter: &Filter,
    out: &mut dyn Write,
) -> Result<u64, Failure> {
    let from = filter.from_seq.max(1);
    if filter.to_seq.is_some_and(|to| to < from) {
        return Err(Failure::Io(anyhow::anyhow!(
            "--to-seq is before --from-seq"
        )));
    }
    // With --org, ownership comes from folding everything before the range too.
    let read_from = if filter.org.is_some() { 1 } else { from };
    let mut events = Events::open(
        source,
        Range {
            from_seq: read_from,
            to_seq: filter.to_seq,
        },
        "export",
    )?;
    let mut ledger = filter.org.map(|_| Ledger::new());
    let mut sink = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER).map_err(anyhow::Error::from)?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => Sink::Jsonl(out, Vec::with_capacity(1024)),
    };
    let mut written = 0u64;
    while let Some((raw, event)) = events.next()? {
        if let (Some(ledger), Some(org)) = (ledger.as_mut(), filter.org) {
            ledger
                .apply(&event)
                .map_err(|v| Failure::bad(v.seq, v.reason))?;
            if event.seq < from || !organizations(ledger, &event.event).contains(&org) {
                continue;
            }
        }
        if let Some(types) = &filter.types {
            if !types.matches(event.event.type_name()) {
                continue;
            }
        }
        match &mut sink {
            Sink::Csv(w) => w
                .write_record(csv_row(raw, &event))
                .map_err(anyhow::Error::from)?,
            Sink::Jsonl(out, line) => {
                line.clear();
                serde_json::to_writer(&mut *line, &event_json(raw, &event))
                    .map_err(anyhow::Error::from)?;
                line.push(b'\n');
                out.write_all(line)?;
            }
        }
        written += 1;
    }
    match sink {
        Sink::Csv(mut w) => w.flush()?,
        Sink::Jsonl(out, _) => out.flush()?,
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        let p = TypePattern::parse("Invoice*,FundsDeposited");
        assert!(p.matches("InvoiceCreated"));
        assert!(p.matches("FundsDeposited"));
        assert!(!p.matches("FundsReserved"));
        assert!(!p.matches("PaymentInitiated"));
        let exact = TypePattern::parse("InvoiceSettled");
        assert!(exact.matches("InvoiceSettled"));
        assert!(!exact.matches("InvoiceSettledLater"));
        assert!(TypePattern::parse("*").matches("Anything"));
    }
}
