//! What the edge accepts as text, dates and media types, before anything is
//! parsed into the domain.
//!
//! Rationale: text given by one organization is shown to another (memos,
//! line items, reasons) and to operators' terminals (logs, exports). A NUL
//! cuts strings short in C tools, other control characters rewrite a
//! terminal, and bidirectional overrides make an invoice read differently
//! from what it says. So no control character is accepted anywhere, but for
//! newline, carriage return and tab in free text, and no bidirectional
//! embedding, override or isolate at all.

use crate::error::ApiError;
use chrono::NaiveDate;
use serde_json::Value;

/// Keys whose values are prose: line breaks and tabs are allowed there.
/// (`reference` too: banks' remittance information, an MT940 `:86:` field
/// say, runs over several lines.)
const FREE_TEXT_KEYS: [&str; 9] = [
    "reference",
    "memo",
    "description",
    "reason",
    "message",
    "question",
    "answer",
    "response",
    "note",
];

/// The longest `Content-Type` kept with a file (RFC 6838 allows 127
/// characters for each of type and subtype; parameters are rare).
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;

/// A character no text may hold (see the module's rationale).
fn forbidden(c: char, free_text: bool) -> bool {
    match c {
        '\n' | '\t' | '\r' => !free_text,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

fn refuse(field: &str, c: char, free_text: bool) -> ApiError {
    let field = if field.is_empty() { "a key" } else { field };
    let allowed = if free_text {
        " (newline and tab are allowed here)"
    } else {
        ""
    };
    ApiError::Validation(format!(
        "{field} contains the character U+{:04X}, which is not accepted in text{allowed}",
        c as u32
    ))
}

/// Checks one string that is not prose (a name, a reference).
pub fn text(field: &str, s: &str) -> Result<(), ApiError> {
    match s.chars().find(|c| forbidden(*c, false)) {
        Some(c) => Err(refuse(field, c, false)),
        None => Ok(()),
    }
}

/// Checks every string of a JSON body, and every key, naming the first
/// offending field by its path (`lineItems[1].description`).
pub fn check_body(value: &Value) -> Result<(), ApiError> {
    walk(value, &mut String::new(), false)
}

fn walk(value: &Value, path: &mut String, free_text: bool) -> Result<(), ApiError> {
    match value {
        Value::String(s) => match s.chars().find(|c| forbidden(*c, free_text)) {
            Some(c) => Err(refuse(path, c, free_text)),
            None => Ok(()),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, free_text)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                if let Some(c) = key.chars().find(|c| forbidden(*c, false)) {
                    return Err(refuse("", c, false));
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let free = FREE_TEXT_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k));
                walk(item, path, free)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// A calendar date exactly as the contract writes it, `YYYY-MM-DD`: chrono
/// alone also takes signed five-digit years (`+99999-01-01`) and one-digit
/// months and days.
pub fn date(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ApiError::Validation(format!("{field} must be a date YYYY-MM-DD")))
}

/// A media type as a client may name it for a file: `type/subtype` with
/// optional parameters, printable ASCII, at most [`MAX_CONTENT_TYPE_CHARS`].
pub fn content_type(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let well_formed = s.len() <= MAX_CONTENT_TYPE_CHARS
        && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && essence
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub));
    if well_formed {
        Ok(s.to_owned())
    } else {
        Err(ApiError::Validation(format!(
            "Content-Type must be a media type such as application/pdf, at most {MAX_CONTENT_TYPE_CHARS} characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(v: Value) -> Option<String> {
        match check_body(&v) {
            Ok(()) => None,
            Err(ApiError::Validation(m)) => Some(m),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn control_and_bidi_characters_are_refused_and_named_by_field() {
        assert_eq!(
            refused(json!({"memo": "a\u{0}b"})).unwrap(),
            "memo contains the character U+0000, which is not accepted in text (newline and tab are allowed here)"
        );
        assert_eq!(
            refused(json!({"lineItems": [{"description": "ok"}, {"description": "pay \u{202E}0001"}]}))
                .unwrap(),
            "lineItems[1].description contains the character U+202E, which is not accepted in text (newline and tab are allowed here)"
        );
        assert_eq!(
            refused(json!({"name": "Acme\nCorp"})).unwrap(),
            "name contains the character U+000A, which is not accepted in text"
        );
        for bad in [
            "\u{7}",
            "\u{1b}[2J",
            "\u{7f}",
            "\u{85}",
            "\u{2066}x\u{2069}",
            "\u{202A}",
        ] {
            assert!(refused(json!({"memo": bad})).is_some(), "{bad:?}");
            assert!(refused(json!({"reference": bad})).is_some(), "{bad:?}");
        }
        assert!(refused(json!({"a\u{0}": 1})).is_some());
        assert!(refused(json!({"nested": {"deeper": ["\u{0}"]}})).is_some());
    }

    #[test]
    fn a_name_is_text_without_any_control_or_bidi_character() {
        assert!(text("filename", "Rechnung März 2031.pdf").is_ok());
        for bad in ["a\nb.pdf", "a\tb", "x\u{0}", "in\u{202E}fdp.exe"] {
            assert!(text("filename", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prose_keeps_its_line_breaks_and_everything_else_passes() {
        for ok in [
            json!({"memo": "line one\nline two\r\n\tindented"}),
            json!({"reason": "Ärger — ü 中文 🙂", "description": "x\ty"}),
            json!({"name": "Acme GmbH", "amount": "1.00", "submit": true, "n": 3, "none": null}),
            json!({"lineItems": [{"description": "a\nb"}]}),
        ] {
            assert_eq!(refused(ok.clone()), None, "{ok}");
        }
    }

    #[test]
    fn dates_are_exactly_yyyy_mm_dd() {
        assert_eq!(
            date("dueDate", "2024-02-29").unwrap(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        for bad in [
            "+99999-01-01",
            "99999-01-01",
            "2024-1-05",
            "2024-01-5",
            "2024-02-30",
            "2024/01/05",
            " 2024-01-05",
            "2024-01-05T00:00:00Z",
            "",
            "２０２４-01-05",
        ] {
            assert!(date("dueDate", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_are_bounded_media_types() {
        assert_eq!(content_type("application/pdf").unwrap(), "application/pdf");
        assert_eq!(
            content_type("text/csv; charset=utf-8").unwrap(),
            "text/csv; charset=utf-8"
        );
        assert!(content_type(
            &"a".repeat(MAX_CONTENT_TYPE_CHARS - 2)
                .replacen('a', "a/", 1)
        )
        .is_ok());
        for bad in [
            "",
            "pdf",
            "application/",
            "/pdf",
            "text/html\u{0}",
            "text/pl\nain",
            "tëxt/plain",
        ] {
            assert!(content_type(bad).is_err(), "{bad:?}");
        }
        let long = format!("application/{}", "x".repeat(MAX_CONTENT_TYPE_CHARS));
        assert!(content_type(&long).is_err());
    }
}
