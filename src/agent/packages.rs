//! The agent CLIs' npm packages at the versions CodeCourier's adapters were checked against: the
//! one place that pins them. A sandbox without the CLI installs this version, the E2B templates in
//! `templates/<tool>/e2b.Dockerfile` build it (a test holds them to it), and the tests run it.

/// One agent CLI as npm publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CliPackage {
    /// The catalog's tool id.
    pub tool: &'static str,
    pub name: &'static str,
    pub version: &'static str,
    /// The executable the package provides.
    pub command: &'static str,
}

impl CliPackage {
    /// `name@version`, as `npm install` takes it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

pub const CLAUDE_CODE: CliPackage = CliPackage {
    tool: "claude-code",
    name: "@anthropic-ai/claude-code",
    version: "2.1.332",
    command: "claude",
};

pub const OPENCODE: CliPackage = CliPackage {
    tool: "opencode",
    name: "opencode-ai",
    version: "1.18.33",
    command: "opencode",
};

pub const CODEX: CliPackage = CliPackage {
    tool: "codex",
    name: "@openai/codex",
    version: "0.169.0",
    command: "codex",
};

pub const PI: CliPackage = CliPackage {
    tool: "pi",
    name: "@mariozechner/pi-coding-agent",
    version: "0.73.1",
    command: "pi",
};

pub const ALL: [CliPackage; 4] = [CLAUDE_CODE, OPENCODE, CODEX, PI];

/// The pinned package of a catalog tool.
pub fn of_tool(tool_id: &str) -> Option<CliPackage> {
    ALL.into_iter().find(|p| p.tool == tool_id)
}
