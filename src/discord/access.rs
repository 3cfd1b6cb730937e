//! Who may do what from Discord, in one place: the servers the bot serves, the roles that may
//! launch (by id), server managers (Discord's Manage Server permission, in the server a record
//! belongs to), the person who started something, whose project a launch uses, and the per-user
//! cap. Every command, button and form asks here, through the same function its command used.

use poise::serenity_prelude as serenity;

use super::dialog::Dialog;
use super::{Context, Data, Error};
use crate::catalog::{usd, RepoRef};
use crate::config::Config;
use crate::ids::DiscordId;
use crate::pipeline::ProjectChoice;
use crate::store::{CapReached, Project};

/// What a person in a server the bot does not serve (or in a direct message) is told; nothing else
/// happens.
pub const NOT_SERVED: &str =
    "CodeCourier serves only the servers its operator set it up for; nothing was done here.";

/// Whether the bot serves the server an interaction came from: one of `CODECOURIER_ALLOWED_GUILDS`,
/// never a direct message.
pub fn serves(config: &Config, guild: Option<serenity::GuildId>) -> bool {
    guild.is_some_and(|g| config.discord.allowed_guilds.contains(&DiscordId(g.get())))
}

/// The person an interaction comes from, as the interaction carries them: a command, a press or a
/// form all give the same facts, so every rule takes this.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    pub user: serenity::UserId,
    pub member: Option<&'a serenity::Member>,
    pub guild: Option<serenity::GuildId>,
}

impl<'a> Actor<'a> {
    pub fn of_command(ctx: Context<'a>) -> Self {
        let member = match ctx {
            poise::Context::Application(app) => app.interaction.member.as_deref(),
            _ => None,
        };
        Self {
            user: ctx.author().id,
            member,
            guild: ctx.guild_id(),
        }
    }

    pub fn of_press(press: &'a serenity::ComponentInteraction) -> Self {
        Self {
            user: press.user.id,
            member: press.member.as_ref(),
            guild: press.guild_id,
        }
    }

    pub fn of_submit(submit: &'a serenity::ModalInteraction) -> Self {
        Self {
            user: submit.user.id,
            member: submit.member.as_ref(),
            guild: submit.guild_id,
        }
    }

    pub fn id(&self) -> DiscordId {
        DiscordId(self.user.get())
    }

    /// Whether they may manage the server they act in (as the interaction carries their
    /// permissions there).
    pub fn manages_server(&self) -> bool {
        self.member
            .and_then(|m| m.permissions)
            .is_some_and(|p| p.manage_guild())
    }

    /// Whether they may act on something `owner` started in server `guild` (stop, retry, follow
    /// up, file or fix its issues, see its record): its owner, or a manager of that same server.
    pub fn owns_or_manages(&self, owner: Option<DiscordId>, guild: Option<DiscordId>) -> bool {
        owner == Some(self.id()) || (self.manages_server() && self.in_guild(guild))
    }

    /// Whether they act in `guild`.
    pub fn in_guild(&self, guild: Option<DiscordId>) -> bool {
        guild.is_some() && guild == self.guild.map(|g| DiscordId(g.get()))
    }
}

/// Whether `actor`, in channel `here`, may see a sandbox's record (its status, log, id): one of
/// this channel (or its thread), their own, or any for a manager — always of this server.
pub fn sees_sandbox(
    actor: &Actor<'_>,
    here: serenity::ChannelId,
    record: &crate::store::SandboxRecord,
) -> bool {
    let here = Some(DiscordId(here.get()));
    let d = &record.discord;
    actor.in_guild(d.guild_id)
        && (d.channel_id == here
            || d.thread_id == here
            || d.user_id == Some(actor.id())
            || actor.manages_server())
}

/// Whether the member who invoked a command may manage the server.
pub fn command_by_manager(ctx: Context<'_>) -> bool {
    Actor::of_command(ctx).manages_server()
}

/// Whether `user` opened the launch dialog `dialog`: a dialog belongs to the person who opened it.
pub fn owns_dialog(dialog: &Dialog, user: serenity::UserId) -> bool {
    dialog.user == user.get()
}

/// Why `actor` may not start sandboxes, if they may not: with `CODECOURIER_ALLOWED_ROLES` set,
/// only members holding one of those roles (matched by id) may. Every way to launch asks this —
/// commands, the dialog, Retry, Follow up, Launch fix, Fix as a chain.
pub fn launch_refusal(config: &Config, actor: &Actor<'_>) -> Option<String> {
    let allowed = &config.allowed_roles;
    if allowed.is_empty() {
        return None;
    }
    let permitted = actor.member.is_some_and(|m| {
        m.roles
            .iter()
            .any(|r| allowed.contains(&DiscordId(r.get())))
    });
    (!permitted).then(|| {
        let roles: Vec<String> = allowed.iter().map(|r| format!("<@&{r}>")).collect();
        format!(
            "Only members with one of these roles may launch: {}. Ask a server manager.",
            roles.join(", ")
        )
    })
}

/// The same for the person who invoked a command.
pub fn command_launch_refusal(ctx: Context<'_>) -> Option<String> {
    launch_refusal(&ctx.data().config, &Actor::of_command(ctx))
}

/// Why `user` may not start `wanted` more sandboxes now, if it would pass the per-user cap. The
/// cap itself holds where a launch is recorded; this only says it early for several at once.
pub async fn cap_refusal(
    data: &Data,
    user: DiscordId,
    wanted: usize,
) -> Result<Option<String>, Error> {
    let running = data.ops.store().unfinished_for_user(user).await?;
    let cap = i64::from(data.config.max_running_per_user);
    if running >= cap {
        return Ok(Some(
            CapReached::User {
                running,
                cap: data.config.max_running_per_user,
            }
            .to_string(),
        ));
    }
    if running + wanted as i64 > cap {
        return Ok(Some(format!(
            "{wanted} fixes would take you past the limit of {cap} running sandboxes (you have {running}). Choose fewer, or wait for one to finish."
        )));
    }
    Ok(None)
}

/// What a launch from a channel works on and whose project it uses: the channel's project for its
/// own repository; any other repository runs with no project's variables or keys, and only a
/// server manager may name one unless it is bound to a project in this server and the channel
/// has a project of its own.
pub struct RepoUse {
    pub repo: Option<String>,
    pub base_branch: Option<String>,
    pub project: ProjectChoice,
}

/// The project a launch on `repo` from a channel whose project is `channel` uses: the channel's,
/// when it works on that repository; otherwise none.
pub fn project_for(channel: Option<&Project>, repo: &str) -> ProjectChoice {
    match channel {
        Some(p) if same_repo(&p.repo, repo) => ProjectChoice::Project(p.id),
        _ => ProjectChoice::Nothing,
    }
}

fn same_repo(a: &str, b: &str) -> bool {
    let a = RepoRef::parse(a);
    a.is_some() && a == RepoRef::parse(b)
}

/// Decides `RepoUse` for `asked` (the `repo:` option) from a channel whose project is `channel`;
/// `Err` is the refusal to show.
pub async fn repo_use(
    data: &Data,
    actor: &Actor<'_>,
    channel: Option<&Project>,
    asked: Option<&str>,
    base_branch: Option<String>,
) -> Result<Result<RepoUse, String>, Error> {
    let same = |project: &Project, asked: &str| same_repo(&project.repo, asked);
    let (project, asked) = match (channel, asked) {
        (Some(project), None) => {
            return Ok(Ok(RepoUse {
                repo: Some(project.repo.clone()),
                base_branch: base_branch.or_else(|| project.base_branch.clone()),
                project: ProjectChoice::Project(project.id),
            }))
        }
        (Some(project), Some(asked)) if same(project, asked) => {
            return Ok(Ok(RepoUse {
                repo: Some(asked.to_string()),
                base_branch: base_branch.or_else(|| project.base_branch.clone()),
                project: ProjectChoice::Project(project.id),
            }))
        }
        // No repository at all: validation names what is missing.
        (None, None) => {
            return Ok(Ok(RepoUse {
                repo: None,
                base_branch,
                project: ProjectChoice::Nothing,
            }))
        }
        (channel, Some(asked)) => (channel, asked),
    };
    let bound_here = match (project, actor.guild) {
        (Some(_), Some(guild)) => data
            .ops
            .store()
            .projects_in_guild(DiscordId(guild.get()))
            .await?
            .iter()
            .any(|p| same(p, asked)),
        _ => false,
    };
    if !bound_here && !actor.manages_server() {
        let text = match project {
            Some(project) => format!(
                "This channel works on {}; `repo:` may name another repository only when it is bound to a project in this server, or for a server manager.",
                project.repo
            ),
            None => "This channel has no project: a server manager can run `/project setup`, or launch with `repo:` themselves.".to_string(),
        };
        return Ok(Err(text));
    }
    Ok(Ok(RepoUse {
        repo: Some(asked.to_string()),
        base_branch,
        project: ProjectChoice::Nothing,
    }))
}

/// Why `actor` may not ask for a budget of `asked` when `cap` (the project's or the deployment's
/// default, or a workflow's own) would apply without asking: a member may lower a budget, only a
/// server manager may raise one.
pub fn budget_refusal(actor: &Actor<'_>, asked: Option<f64>, cap: Option<f64>) -> Option<String> {
    let (asked, cap) = (asked?, cap?);
    if asked <= cap || actor.manages_server() {
        return None;
    }
    Some(format!(
        "A budget above {} needs Manage Server: ask for at most that, or leave `budget_usd` out.",
        usd(cap)
    ))
}

/// The budget a launch with `project` would have without asking: the project's default, else the
/// deployment's.
pub async fn default_budget(data: &Data, project: &ProjectChoice) -> Result<Option<f64>, Error> {
    let of_project = match project {
        ProjectChoice::Project(id) => data
            .ops
            .store()
            .get_project(*id)
            .await?
            .and_then(|p| p.default_budget_usd),
        ProjectChoice::OfRepository | ProjectChoice::Nothing => None,
    };
    Ok(of_project.or(data.config.default_budget_usd))
}
