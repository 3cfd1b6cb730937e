//! Identifier newtypes shared by every layer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A record id that is a random UUID, shown in full or by its first eight hex digits.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The first eight hex digits: what branch names and compact listings show.
            pub fn short(&self) -> String {
                self.0.simple().to_string()[..8].to_string()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A sandbox record's id.
    SandboxId
);
uuid_id!(
    /// An issue session's id.
    IssueSessionId
);
uuid_id!(
    /// A workflow run's id.
    WorkflowRunId
);
uuid_id!(
    /// A work chain's id.
    WorkChainId
);

/// What kind of workflow job: one run of a workflow, or a chain of runs on one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Run,
    Chain,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Run => "workflow run",
            JobKind::Chain => "work chain",
        })
    }
}

/// A workflow job's id: a run's or a chain's, shown as "workflow run <id>" or "work chain <id>".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobId {
    Run(WorkflowRunId),
    Chain(WorkChainId),
}

impl JobId {
    pub fn kind(&self) -> JobKind {
        match self {
            JobId::Run(_) => JobKind::Run,
            JobId::Chain(_) => JobKind::Chain,
        }
    }

    /// The UUID alone, as the records hold it.
    pub fn id_text(&self) -> String {
        match self {
            JobId::Run(id) => id.to_string(),
            JobId::Chain(id) => id.to_string(),
        }
    }

    /// The first eight hex digits.
    pub fn short(&self) -> String {
        match self {
            JobId::Run(id) => id.short(),
            JobId::Chain(id) => id.short(),
        }
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id_text())
    }
}

/// A Discord snowflake (user, guild, channel, thread, message). 64-bit unsigned: SQLite's INTEGER is
/// signed, so the store keeps these as decimal text; JSON carries them as strings too, as Discord
/// does, because JSON numbers lose precision past 2^53 in most readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiscordId(pub u64);

impl Serialize for DiscordId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DiscordId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(Self(n)),
            Either::Text(t) => t.parse().map(Self).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for DiscordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DiscordId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_ids_are_json_strings_without_loss() {
        let id = DiscordId(u64::MAX);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"18446744073709551615\""
        );
        assert_eq!(
            serde_json::from_str::<DiscordId>("\"18446744073709551615\"").unwrap(),
            id
        );
        assert_eq!(
            serde_json::from_str::<DiscordId>("42").unwrap(),
            DiscordId(42)
        );
    }

    #[test]
    fn short_id_is_a_prefix_of_the_full_id() {
        let id = SandboxId::new();
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
        assert_eq!(id.to_string().parse::<SandboxId>().unwrap(), id);
    }

    #[test]
    fn a_job_id_says_its_kind_and_keeps_the_id_of_its_run_or_chain() {
        let run = WorkflowRunId::new();
        let job = JobId::Run(run);
        assert_eq!(job.kind(), JobKind::Run);
        assert_eq!(job.id_text(), run.to_string());
        assert_eq!(job.short(), run.short());
        assert_eq!(job.to_string(), format!("workflow run {run}"));
        let chain = WorkChainId::new();
        assert_eq!(
            JobId::Chain(chain).to_string(),
            format!("work chain {chain}")
        );
    }
}
