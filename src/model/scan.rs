//! What a scan finds: an issue (severity, files, effort) and the status of an issue session.
//! Plain data the store keeps and the pipeline, CLI and Discord show.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Severity::Critical => "🟥",
            Severity::High => "🟧",
            Severity::Medium => "🟨",
            Severity::Low => "🟦",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const EFFORTS: [&str; 4] = ["trivial", "small", "medium", "large"];

/// A place in the repository an issue points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
}

impl std::fmt::Display for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.start_line, self.end_line) {
            (Some(a), Some(b)) if a != b => write!(f, "{}:{a}-{b}", self.path),
            (Some(a), _) => write!(f, "{}:{a}", self.path),
            _ => f.write_str(&self.path),
        }
    }
}

/// One issue as the scanning agent reported it (and as it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedIssue {
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: String,
    pub files: Vec<FileRange>,
    pub evidence: String,
    pub suggested_fix: String,
    pub effort: String,
}

/// Where an issue session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSessionStatus {
    Running,
    Completed,
    Failed,
    Stopped,
}

impl IssueSessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueSessionStatus::Running => "running",
            IssueSessionStatus::Completed => "completed",
            IssueSessionStatus::Failed => "failed",
            IssueSessionStatus::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            IssueSessionStatus::Running,
            IssueSessionStatus::Completed,
            IssueSessionStatus::Failed,
            IssueSessionStatus::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for IssueSessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
