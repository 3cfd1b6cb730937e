//! Sandbox statuses (a forward-only state machine) and the phases of the launch sequence.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `creating → provisioning → setting_up → running → completed | failed | timed_out | stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStatus {
    Creating,
    Provisioning,
    SettingUp,
    Running,
    Completed,
    Failed,
    TimedOut,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sandbox cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: SandboxStatus,
    pub to: SandboxStatus,
}

impl SandboxStatus {
    pub const ALL: [SandboxStatus; 8] = [
        SandboxStatus::Creating,
        SandboxStatus::Provisioning,
        SandboxStatus::SettingUp,
        SandboxStatus::Running,
        SandboxStatus::Completed,
        SandboxStatus::Failed,
        SandboxStatus::TimedOut,
        SandboxStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Creating => "creating",
            SandboxStatus::Provisioning => "provisioning",
            SandboxStatus::SettingUp => "setting_up",
            SandboxStatus::Running => "running",
            SandboxStatus::Completed => "completed",
            SandboxStatus::Failed => "failed",
            SandboxStatus::TimedOut => "timed_out",
            SandboxStatus::Stopped => "stopped",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SandboxStatus::Completed
                | SandboxStatus::Failed
                | SandboxStatus::TimedOut
                | SandboxStatus::Stopped
        )
    }

    /// Forward only, one step at a time; `failed` and `stopped` from any live state; `timed_out`
    /// once a sandbox exists (a timeout is the sandbox's own limit).
    pub fn can_become(self, next: SandboxStatus) -> bool {
        use SandboxStatus::*;
        if self.is_terminal() {
            return false;
        }
        match next {
            Failed | Stopped => true,
            TimedOut => matches!(self, Provisioning | SettingUp | Running),
            Provisioning => self == Creating,
            SettingUp => self == Provisioning,
            Running => self == SettingUp,
            Completed => self == Running,
            Creating => false,
        }
    }

    pub fn check_transition(self, next: SandboxStatus) -> Result<(), IllegalTransition> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("\"{s}\" is not a status; choose {}", names.join(", "))
            })
    }
}

/// The steps of the launch sequence, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Validate,
    Record,
    /// Check the repository and create the feature branch where it lives, before paying for a sandbox.
    Prepare,
    Provision,
    Clone,
    Branch,
    Credentials,
    Environment,
    SystemPrompt,
    /// The project's setup script, or the installs its lockfiles name.
    Setup,
    ToolSetup,
    Agent,
    Finish,
}

impl Phase {
    pub const ALL: [Phase; 13] = [
        Phase::Validate,
        Phase::Record,
        Phase::Prepare,
        Phase::Provision,
        Phase::Clone,
        Phase::Branch,
        Phase::Credentials,
        Phase::Environment,
        Phase::SystemPrompt,
        Phase::Setup,
        Phase::ToolSetup,
        Phase::Agent,
        Phase::Finish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validate => "validate",
            Phase::Record => "record",
            Phase::Prepare => "prepare",
            Phase::Provision => "provision",
            Phase::Clone => "clone",
            Phase::Branch => "branch",
            Phase::Credentials => "credentials",
            Phase::Environment => "environment",
            Phase::SystemPrompt => "system_prompt",
            Phase::Setup => "setup",
            Phase::ToolSetup => "tool_setup",
            Phase::Agent => "agent",
            Phase::Finish => "finish",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a phase"))
    }
}

/// How a phase ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseOutcome {
    Running,
    Ok,
    Failed,
    Skipped,
}

impl PhaseOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseOutcome::Running => "running",
            PhaseOutcome::Ok => "ok",
            PhaseOutcome::Failed => "failed",
            PhaseOutcome::Skipped => "skipped",
        }
    }
}

impl FromStr for PhaseOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Running, Self::Ok, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a phase outcome"))
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_moves_one_step_at_a_time() {
        let path = [Creating, Provisioning, SettingUp, Running, Completed];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
        assert!(!Creating.can_become(Running));
        assert!(!Provisioning.can_become(Completed));
    }

    #[test]
    fn failed_and_stopped_are_reachable_from_every_live_state() {
        for from in [Creating, Provisioning, SettingUp, Running] {
            assert!(
                from.can_become(Failed) && from.can_become(Stopped),
                "{from}"
            );
        }
        assert!(!Creating.can_become(TimedOut));
        assert!(Running.can_become(TimedOut));
    }

    #[test]
    fn nothing_moves_backwards_or_out_of_a_terminal_state() {
        for (i, from) in SandboxStatus::ALL.iter().enumerate() {
            for to in &SandboxStatus::ALL[..=i.min(3)] {
                assert!(!from.can_become(*to), "{from} -> {to}");
            }
            if from.is_terminal() {
                for to in SandboxStatus::ALL {
                    let err = from.check_transition(to).unwrap_err();
                    assert_eq!(
                        err.to_string(),
                        format!("a sandbox cannot go from {from} to {to}")
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in SandboxStatus::ALL {
            assert_eq!(s.as_str().parse::<SandboxStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
        }
        assert!("done"
            .parse::<SandboxStatus>()
            .unwrap_err()
            .contains("timed_out"));
    }
}
