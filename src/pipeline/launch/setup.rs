//! Getting the sandbox ready for the agent: the launch's environment, the system prompt, and the
//! tool's own setup (its configuration files, keys, the CLI itself, a resumed session).

use super::{count, Ending, Launch, Launcher};
use crate::agent::{self, AgentContext, AgentPlan, SYSTEM_PROMPT_FILE};
use crate::catalog::LaunchMode;
use crate::model::Phase;
use crate::pipeline::prompt::{learnings_section, read_only_system_prompt, system_prompt};

impl Launcher {
    /// The environment phase: the launch's variables (its own and its project's), named.
    pub(super) async fn pass_environment(&self, launch: &Launch<'_>) -> Result<(), Ending> {
        let names: Vec<&str> = launch.request.env.iter().map(|(n, _)| n.as_str()).collect();
        self.phase(launch, Phase::Environment, async {
            let detail = if names.is_empty() {
                "no extra variables".to_string()
            } else {
                format!("{}: {}", count(names.len(), "variable"), names.join(", "))
            };
            Ok(((), Ok(detail)))
        })
        .await
    }

    /// The system prompt phase: the prompt the CLI reads, written to its file. A read-only launch
    /// is told what it reads and that nothing is kept.
    pub(super) async fn write_system_prompt(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let reads_memory = launch.tool.capabilities.claude_md;
        let project = launch.project;
        launch.system_prompt = match launch.request.mode {
            LaunchMode::Scan(_) => {
                read_only_system_prompt(&launch.base_branch, project, !reads_memory)
            }
            LaunchMode::Check => read_only_system_prompt(&launch.branch, project, !reads_memory),
            LaunchMode::Work => {
                system_prompt(&launch.branch, &launch.base_branch, project, !reads_memory)
            }
        };
        if reads_memory {
            launch.memory = learnings_section(project);
        }
        self.phase(launch, Phase::SystemPrompt, async {
            let text = launch.system_prompt.as_bytes();
            self.provider
                .write_file(launch.handle(), SYSTEM_PROMPT_FILE, text, 0o644)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::SystemPrompt, e))?;
            Ok(((), Ok(format!("{} bytes", text.len()))))
        })
        .await
    }

    /// The tool setup phase: the CLI's plan (command line, environment, files), the CLI installed
    /// when the sandbox lacks it, and its files written. A follow-up first gets its earlier agent
    /// session back where the tool can resume one.
    pub(super) async fn set_up_tool(&self, launch: &Launch<'_>) -> Result<AgentPlan, Ending> {
        let request = launch.request;
        let session_id = uuid::Uuid::new_v4().to_string();
        let resumed = self.restore_session(launch).await?;
        let schema = launch.answer_schema();
        self.phase(launch, Phase::ToolSetup, async {
            let mut plan = agent::plan(AgentContext {
                tool: launch.tool,
                model: &request.model,
                effort: request.effort,
                session_id: &session_id,
                resume: resumed.as_deref(),
                keys: launch.agent_keys.clone(),
                env: &launch.agent_env,
                system_prompt: &launch.system_prompt,
                memory: &launch.memory,
                skills: launch.project.skills(),
                commands: launch.project.commands(),
                output_schema: schema.as_deref(),
            })
            .map_err(Ending::failed(Phase::ToolSetup))?;
            let installed = self.ensure_cli(launch, &plan).await?;
            if let Some(installed) = &installed {
                plan.argv[0] = installed.path.clone();
            }
            for file in &plan.files {
                self.provider
                    .write_file(launch.handle(), &file.path, &file.contents, file.mode)
                    .await
                    .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?;
            }
            let keys: Vec<&str> = launch.keys.iter().map(|(n, _)| n.as_str()).collect();
            let mut detail = format!(
                "{} · {} · effort {} · {} · key {}",
                launch.tool.name,
                request.model,
                request.effort,
                count(plan.files.len(), "setup file"),
                keys.join(", "),
            );
            if let Some(installed) = installed {
                detail.push_str(&super::agent::install_note(launch, &installed));
            }
            if let Some(session) = &resumed {
                detail.push_str(&format!(" · resuming session {session}"));
            }
            let (skills, commands) = (launch.project.skills(), launch.project.commands());
            if !skills.is_empty() || !commands.is_empty() {
                detail.push_str(&format!(
                    " · {} and {} given",
                    count(skills.len(), "skill"),
                    count(commands.len(), "command")
                ));
            }
            for note in &plan.left_out {
                detail.push_str(&format!(" · {note}"));
            }
            Ok((plan, Ok(detail)))
        })
        .await
    }
}
