//! How spend is reported: what rows are grouped by, and the window they cover.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// What a usage report's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageBy {
    /// Who launched: a Discord user, or the terminal user's name.
    #[default]
    Person,
    Project,
    /// The model the gateway saw in responses (a launch may call several).
    Model,
    Tool,
}

impl UsageBy {
    pub const ALL: [UsageBy; 4] = [
        UsageBy::Person,
        UsageBy::Project,
        UsageBy::Model,
        UsageBy::Tool,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Person => "person",
            UsageBy::Project => "project",
            UsageBy::Model => "model",
            UsageBy::Tool => "tool",
        }
    }
}

impl fmt::Display for UsageBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UsageBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|by| by.as_str() == text.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("\"{text}\" is not a grouping: use person, project, model or tool")
            })
    }
}

/// The window a report covers: launches started within the last `span`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub span: Duration,
    /// How it was written (`7d`), for the report's heading.
    pub label: String,
}

/// The longest window: ten years, so `start` never underflows.
const LONGEST_DAYS: i64 = 3650;

impl Since {
    /// The default window: 30 days.
    pub fn default_window() -> Self {
        Self {
            span: Duration::days(30),
            label: "30d".into(),
        }
    }

    /// `90m`, `12h`, `7d` or `4w`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let bad = || {
            format!("\"{text}\" is not a window: give a number and m, h, d or w (90m, 12h, 7d, 4w)")
        };
        let unit = text.chars().last().ok_or_else(bad)?;
        let count: i64 = text[..text.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| bad())?;
        if count <= 0 {
            return Err(bad());
        }
        let span = match unit {
            'm' => Duration::minutes(count.min(LONGEST_DAYS * 24 * 60)),
            'h' => Duration::hours(count.min(LONGEST_DAYS * 24)),
            'd' => Duration::days(count.min(LONGEST_DAYS)),
            'w' => Duration::weeks(count.min(LONGEST_DAYS / 7)),
            _ => return Err(bad()),
        };
        Ok(Self { span, label: text })
    }

    /// The earliest launch the window holds, counted back from `now`.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_in_minutes_hours_days_and_weeks() {
        assert_eq!(Since::parse("90m").unwrap().span, Duration::minutes(90));
        assert_eq!(Since::parse("12h").unwrap().span, Duration::hours(12));
        assert_eq!(Since::parse(" 7D ").unwrap().span, Duration::days(7));
        assert_eq!(Since::parse("4w").unwrap().span, Duration::weeks(4));
        assert_eq!(
            Since::parse("99999999999d").unwrap().span,
            Duration::days(LONGEST_DAYS)
        );
        for bad in ["", "d", "7", "-3d", "0d", "7y", "7é", "1.5d"] {
            let error = Since::parse(bad).unwrap_err();
            assert!(error.contains("90m, 12h, 7d, 4w"), "{bad}: {error}");
        }
    }

    #[test]
    fn groupings_parse_by_name() {
        assert_eq!("Model".parse::<UsageBy>(), Ok(UsageBy::Model));
        assert!("team".parse::<UsageBy>().unwrap_err().contains("person"));
    }
}
