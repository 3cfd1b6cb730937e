//! The store against real SQLite files: records, the status state machine, phases, events, secrets.

use codecourier::catalog::{Catalog, LaunchInput, LaunchRequest};
use codecourier::ids::DiscordId;
use codecourier::model::{Phase, PhaseOutcome, SandboxStatus};
use codecourier::secret::{KeySource, Secret, SecretKey};
use codecourier::store::{
    DiscordOrigin, NewSandbox, RunningCaps, SandboxFilter, Store, StoreError,
};

struct TestStore {
    store: Store,
    dir: tempfile::TempDir,
}

async fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let store = Store::open_with_key(&url, SecretKey::generate(), KeySource::Environment)
        .await
        .unwrap();
    TestStore { store, dir }
}

fn request(env: &[&str]) -> LaunchRequest {
    LaunchInput {
        prompt: Some("Add a README".into()),
        repo: Some("acme/widgets".into()),
        env: env.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
    .validate(&Catalog::built_in(), false)
    .unwrap()
}

fn new_sandbox(request: &LaunchRequest) -> NewSandbox<'_> {
    NewSandbox {
        request,
        launched_by: "alice",
        discord: None,
        project_id: None,
        issue_session: None,
        workflow: None,
        caps: Default::default(),
    }
}

#[tokio::test]
async fn a_new_sandbox_is_creating_and_reads_back_whole() {
    let t = store().await;
    let req = request(&[]);
    let id = t
        .store
        .insert_sandbox(&NewSandbox {
            discord: Some(DiscordOrigin {
                user_id: DiscordId(u64::MAX),
                guild_id: Some(DiscordId(1 << 63)),
                channel_id: DiscordId(1),
            }),
            ..new_sandbox(&req)
        })
        .await
        .unwrap();
    let record = t.store.get_sandbox(id).await.unwrap().unwrap();
    assert_eq!(record.status, SandboxStatus::Creating);
    assert_eq!(record.request.prompt, "Add a README");
    assert_eq!(record.request.model, "claude-sonnet-4-6");
    assert_eq!(record.launched_by, "alice");
    assert_eq!(record.discord.user_id, Some(DiscordId(u64::MAX)));
    assert_eq!(record.discord.guild_id, Some(DiscordId(1 << 63)));
    assert_eq!(record.finished_at, None);
}

#[tokio::test]
async fn statuses_only_move_forward() {
    let t = store().await;
    let req = request(&[]);
    let id = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    let err = t
        .store
        .transition(id, SandboxStatus::Running)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("cannot go from creating to running"));

    for next in [
        SandboxStatus::Provisioning,
        SandboxStatus::SettingUp,
        SandboxStatus::Running,
        SandboxStatus::Completed,
    ] {
        t.store.transition(id, next).await.unwrap();
    }
    let err = t
        .store
        .transition(id, SandboxStatus::Failed)
        .await
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot go from completed to failed"));
    let record = t.store.get_sandbox(id).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        SandboxStatus::Completed,
        "an illegal transition changes nothing"
    );
    assert!(record.finished_at.is_some());
}

#[tokio::test]
async fn concurrent_terminal_transitions_have_one_winner() {
    let t = store().await;
    let req = request(&[]);
    let id = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    t.store
        .transition(id, SandboxStatus::Provisioning)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        t.store.transition(id, SandboxStatus::Stopped),
        t.store.transition(id, SandboxStatus::TimedOut),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
}

#[tokio::test]
async fn phases_record_timing_and_the_failed_phase() {
    let t = store().await;
    let req = request(&[]);
    let id = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    t.store.start_phase(id, Phase::Provision).await.unwrap();
    t.store
        .end_phase(
            id,
            Phase::Provision,
            PhaseOutcome::Ok,
            Some("memory limit enforced"),
        )
        .await
        .unwrap();
    t.store.start_phase(id, Phase::Clone).await.unwrap();
    t.store
        .end_phase(
            id,
            Phase::Clone,
            PhaseOutcome::Failed,
            Some("repository not found"),
        )
        .await
        .unwrap();
    let err = t
        .store
        .end_phase(id, Phase::Agent, PhaseOutcome::Ok, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without having started"));

    let record = t.store.get_sandbox(id).await.unwrap().unwrap();
    let phases: Vec<_> = record.phases.iter().map(|p| (p.phase, p.outcome)).collect();
    assert_eq!(
        phases,
        [
            (Phase::Provision, PhaseOutcome::Ok),
            (Phase::Clone, PhaseOutcome::Failed)
        ]
    );
    assert!(record.phases.iter().all(|p| p.duration_ms().unwrap() >= 0));
    assert_eq!(record.current_phase, Some(Phase::Clone));
    assert_eq!(record.failed_phase, Some(Phase::Clone));
}

#[tokio::test]
async fn events_are_numbered_in_order_and_kept_even_when_odd() {
    let t = store().await;
    let req = request(&[]);
    let id = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    let other = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    for i in 0..3 {
        let seq = t
            .store
            .append_event(id, "agent.text", &serde_json::json!({ "n": i }))
            .await
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    assert_eq!(
        t.store
            .append_event(other, "agent.text", &serde_json::json!({}))
            .await
            .unwrap(),
        1
    );
    let later = t.store.events(id, 1).await.unwrap();
    assert_eq!(later.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(later[1].payload["n"], 2);
}

#[tokio::test]
async fn env_values_are_encrypted_at_rest() {
    let t = store().await;
    let req = request(&["API_TOKEN=sk-planted-secret-123", "MODE=fast"]);
    let id = t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap();
    let env = t.store.sandbox_env(id).await.unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
    assert_eq!(
        env,
        [("API_TOKEN", "sk-planted-secret-123"), ("MODE", "fast")]
    );
    let record = t.store.get_sandbox(id).await.unwrap().unwrap();
    assert_eq!(record.env_names, ["API_TOKEN", "MODE"]);
    assert!(!serde_json::to_string(&record).unwrap().contains("planted"));

    t.store.close().await;
    // A connection still closing may checkpoint the WAL into the database and remove it while
    // the files are read: a scan counts only when every file it listed could be read.
    let files = (0..100)
        .find_map(|_| {
            std::fs::read_dir(t.dir.path())
                .unwrap()
                .map(|file| std::fs::read(file.unwrap().path()))
                .collect::<Result<Vec<_>, _>>()
                .ok()
        })
        .expect("the database's files kept vanishing while read");
    for bytes in files {
        assert!(
            !bytes.windows(7).any(|w| w == b"planted"),
            "plaintext secret on disk"
        );
    }
}

#[tokio::test]
async fn secrets_replace_and_a_wrong_key_is_an_error_not_garbage() {
    let t = store().await;
    t.store
        .put_secret("project:1", "OPENAI_API_KEY", &Secret::new("one"))
        .await
        .unwrap();
    t.store
        .put_secret("project:1", "OPENAI_API_KEY", &Secret::new("two"))
        .await
        .unwrap();
    let value = t
        .store
        .get_secret("project:1", "OPENAI_API_KEY")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), "two");
    assert!(t
        .store
        .get_secret("project:2", "OPENAI_API_KEY")
        .await
        .unwrap()
        .is_none());
    t.store.close().await;

    let url = format!("sqlite://{}/test.db", t.dir.path().display());
    let other_key = Store::open_with_key(&url, SecretKey::generate(), KeySource::Environment)
        .await
        .unwrap();
    let err = other_key
        .get_secret("project:1", "OPENAI_API_KEY")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("secret key differs"), "{err}");
}

#[tokio::test]
async fn sandboxes_are_found_by_unique_prefix_and_listed_newest_first() {
    let t = store().await;
    let req = request(&[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.store.insert_sandbox(&new_sandbox(&req)).await.unwrap());
    }
    let found = t.store.find_sandbox(&ids[0].short()).await.unwrap();
    assert_eq!(found.id, ids[0]);
    assert_eq!(
        t.store
            .find_sandbox(&ids[1].to_string().to_uppercase())
            .await
            .unwrap()
            .id,
        ids[1]
    );
    assert!(matches!(
        t.store.find_sandbox("zzzz").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        t.store.find_sandbox("ab").await,
        Err(StoreError::NotFound(_))
    ));

    t.store
        .transition(ids[2], SandboxStatus::Stopped)
        .await
        .unwrap();
    let all = t
        .store
        .list_sandboxes(&SandboxFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]]
    );
    let stopped = t
        .store
        .list_sandboxes(&SandboxFilter {
            status: Some(SandboxStatus::Stopped),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stopped.len(), 1);
    let two = t
        .store
        .list_sandboxes(&SandboxFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(two.len(), 2);

    let req = request(&[]);
    let from_discord = t
        .store
        .insert_sandbox(&NewSandbox {
            discord: Some(DiscordOrigin {
                user_id: DiscordId(7),
                guild_id: None,
                channel_id: DiscordId(9),
            }),
            ..new_sandbox(&req)
        })
        .await
        .unwrap();
    for filter in [
        SandboxFilter {
            discord_user: Some(DiscordId(7)),
            limit: 10,
            ..Default::default()
        },
        SandboxFilter {
            discord_channel: Some(DiscordId(9)),
            limit: 10,
            ..Default::default()
        },
    ] {
        let found = t.store.list_sandboxes(&filter).await.unwrap();
        assert_eq!(
            found.iter().map(|r| r.id).collect::<Vec<_>>(),
            [from_discord]
        );
    }
    assert_eq!(t.store.unfinished_for_user(DiscordId(7)).await.unwrap(), 1);
}

/// A database another connection holds locked while it is first set up (two commands starting on a
/// new data directory): opening waits for it instead of failing with "database is locked".
#[tokio::test(flavor = "multi_thread")]
async fn opening_waits_for_a_database_another_connection_holds_locked() {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/locked.db", dir.path().display());
    let mut holder = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
    });
    let started = std::time::Instant::now();
    let store = Store::open_with_key(&url, SecretKey::generate(), KeySource::Environment)
        .await
        .unwrap_or_else(|e| panic!("after {:?}: {e:#}", started.elapsed()));
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000));
    release.await.unwrap();
    assert!(store.applied_migrations().await.unwrap() > 0);
}

/// Two CodeCourier processes may both find a run stale; only one takes it over, and a driver
/// whose run was taken over or ended learns it at its next heartbeat.
#[tokio::test]
async fn only_one_process_takes_over_a_run() {
    use codecourier::ids::WorkflowRunId;
    use codecourier::model::workflow::{Task, WorkflowDef};
    use codecourier::store::{JobEnd, JobOwner, JobStatus, NewJob, NewWork};
    let t = store().await;
    let workflow = WorkflowDef::built_in();
    let task = Task::from_prompt("Add a README", "prompt");
    let owner = JobOwner {
        project_id: None,
        launched_by: "alice",
        discord: None,
    };
    let work = NewWork::Run {
        id: WorkflowRunId::new(),
        task: &task,
        branch: None,
        chain: None,
    };
    let id = work.id();
    t.store
        .insert_job(&NewJob {
            workflow: &workflow,
            repo: "acme/widgets",
            base_branch: None,
            owner: &owner,
            work,
        })
        .await
        .unwrap();
    assert!(t.store.claim_job(id, None, "h:1:a").await.unwrap());
    assert!(
        !t.store.claim_job(id, None, "h:2:b").await.unwrap(),
        "taken"
    );
    // The first driver is found stale by two successors: one wins.
    assert!(t.store.claim_job(id, Some("h:1:a"), "h:3:c").await.unwrap());
    assert!(!t.store.claim_job(id, Some("h:1:a"), "h:4:d").await.unwrap());
    assert!(t.store.job_heartbeat(id, "h:3:c").await.unwrap());
    assert!(
        !t.store.job_heartbeat(id, "h:1:a").await.unwrap(),
        "the old driver learns it lost the run"
    );
    let end = JobEnd::new(JobStatus::Stopped, Some("stopped".into()));
    t.store.finish_job(id, &end).await.unwrap();
    assert!(
        !t.store.job_heartbeat(id, "h:3:c").await.unwrap(),
        "an ended run stops its driver"
    );
}

/// A chain and its runs are one kind of record each: a chain lists its runs in order, every job
/// is found by its kind and a prefix of its id, and the JSON the terminal prints (`--json`) keeps
/// each kind's fields.
#[tokio::test]
async fn a_chain_holds_its_runs_and_each_job_prints_its_own_fields() {
    use codecourier::ids::{JobId, JobKind, WorkChainId, WorkflowRunId};
    use codecourier::model::workflow::{Task, WorkflowDef};
    use codecourier::store::{JobEnd, JobOwner, JobStatus, NewJob, NewWork, Work};
    let t = store().await;
    let workflow = WorkflowDef::built_in();
    let owner = JobOwner {
        project_id: None,
        launched_by: "alice",
        discord: None,
    };
    let items = [
        Task::from_prompt("Add a README", "text"),
        Task::from_prompt("Add a LICENSE", "text"),
    ];
    let new = |work| NewJob {
        workflow: &workflow,
        repo: "acme/widgets",
        base_branch: Some("main"),
        owner: &owner,
        work,
    };
    let chain_id = WorkChainId::new();
    let chain = JobId::Chain(chain_id);
    let work = NewWork::Chain {
        id: chain_id,
        items: &items,
        continue_on_failure: true,
        issue_session: None,
    };
    t.store.insert_job(&new(work)).await.unwrap();
    // The second issue's run is recorded before the first's: the chain lists them by position.
    let mut runs = Vec::new();
    for position in [1, 0] {
        let work = NewWork::Run {
            id: WorkflowRunId::new(),
            task: &items[position as usize],
            branch: Some("codecourier/chain"),
            chain: Some((chain_id, position)),
        };
        runs.push(work.id());
        t.store.insert_job(&new(work)).await.unwrap();
    }
    let end = JobEnd::new(JobStatus::Passed, None);
    assert_eq!(
        t.store.finish_job(runs[1], &end).await.unwrap(),
        JobStatus::Passed
    );

    let record = t
        .store
        .find_job(JobKind::Chain, &chain.short())
        .await
        .unwrap();
    assert_eq!(record.id(), chain);
    assert_eq!(record.title(), "Add a README");
    let Work::Chain(work) = &record.work else {
        panic!("a chain read as {:?}", record.work);
    };
    assert_eq!(work.run_at(0).map(|r| r.id()), Some(runs[1]));
    assert_eq!(
        work.run_at(1).map(|r| (r.id(), r.status)),
        Some((runs[0], JobStatus::Running))
    );
    assert!(
        t.store
            .find_job(JobKind::Run, &chain.short())
            .await
            .is_err(),
        "a chain is no run"
    );
    let unfinished: Vec<_> = t
        .store
        .unfinished_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(
        unfinished,
        vec![chain],
        "a chain's runs are resumed through their chain"
    );

    let json = serde_json::to_value(&record).unwrap();
    let keys = |value: &serde_json::Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let shared = [
        "id",
        "project_id",
        "workflow",
        "repo",
        "base_branch",
        "branch",
        "status",
        "error",
        "pr_url",
        "launched_by",
        "discord_user_id",
        "discord_guild_id",
        "discord_channel_id",
        "discord_thread_id",
        "discord_message_id",
        "runner",
        "heartbeat_at",
        "created_at",
        "finished_at",
    ];
    let with = |own: &[&str]| {
        let mut all: Vec<String> = shared.iter().chain(own).map(|k| k.to_string()).collect();
        all.sort();
        all
    };
    assert_eq!(
        keys(&json),
        with(&["items", "continue_on_failure", "issue_session_id", "runs"])
    );
    assert_eq!(json["id"], chain.id_text());
    assert_eq!(
        keys(&json["runs"][0]),
        with(&[
            "task",
            "work_chain_id",
            "chain_position",
            "findings",
            "steps"
        ])
    );
    assert_eq!(json["runs"][0]["status"], "passed");
    assert_eq!(json["runs"][1]["chain_position"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_caps_hold_when_launches_are_recorded_at_once() {
    let t = store().await;
    let req = request(&[]);
    let alice = Some(DiscordOrigin {
        user_id: DiscordId(7),
        guild_id: Some(DiscordId(1)),
        channel_id: DiscordId(9),
    });
    let per_user = RunningCaps {
        per_user: Some(2),
        total: None,
    };
    let attempts = (0..5).map(|_| {
        let (store, req) = (t.store.clone(), req.clone());
        tokio::spawn(async move {
            store
                .insert_sandbox(&NewSandbox {
                    discord: alice,
                    caps: per_user,
                    ..new_sandbox(&req)
                })
                .await
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| match r.as_ref().unwrap() {
            Err(StoreError::AtCapacity(cap)) => Some(cap.to_string()),
            Err(other) => panic!("not a cap refusal: {other}"),
            Ok(_) => None,
        })
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(
        refused[0],
        "You already have 2 sandboxes running (the limit is 2): stop one, or wait for one to finish."
    );
    let recorded = t
        .store
        .list_sandboxes(&SandboxFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);

    // The deployment's cap counts everyone's, terminal launches included.
    let total = RunningCaps {
        per_user: None,
        total: Some(4),
    };
    let attempts = (0..5).map(|_| {
        let (store, req) = (t.store.clone(), req.clone());
        tokio::spawn(async move {
            store
                .insert_sandbox(&NewSandbox {
                    caps: total,
                    ..new_sandbox(&req)
                })
                .await
        })
    });
    let admitted = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(admitted, 2);
    let err = t
        .store
        .insert_sandbox(&NewSandbox {
            caps: total,
            ..new_sandbox(&req)
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CodeCourier already runs 4 sandboxes, its limit (CODECOURIER_MAX_RUNNING=4): wait for one to finish."
    );
}

#[tokio::test]
async fn metered_usage_adds_up_per_model_and_an_unpriced_model_stays_unpriced() {
    use codecourier::store::ModelUsage;
    let t = store().await;
    let request = request(&[]);
    let id = t
        .store
        .insert_sandbox(&new_sandbox(&request))
        .await
        .unwrap();
    let priced = |input, cost| ModelUsage {
        requests: 1,
        input_tokens: input,
        output_tokens: 10,
        cache_read_tokens: 5,
        cache_write_tokens: 1,
        cost_usd: cost,
    };
    for usage in [priced(100, Some(0.5)), priced(20, Some(0.25))] {
        t.store
            .add_model_usage(id, "anthropic", "claude-sonnet-4-6", &usage)
            .await
            .unwrap();
    }
    for usage in [priced(7, Some(1.0)), priced(3, None)] {
        t.store
            .add_model_usage(id, "openrouter", "mystery/model", &usage)
            .await
            .unwrap();
    }
    let rows = t.store.metered_models(id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].model, "claude-sonnet-4-6");
    assert_eq!(
        rows[0].usage,
        ModelUsage {
            requests: 2,
            input_tokens: 120,
            output_tokens: 20,
            cache_read_tokens: 10,
            cache_write_tokens: 2,
            cost_usd: Some(0.75),
        }
    );
    assert_eq!(rows[0].usage.tokens(), 152);
    assert_eq!((rows[1].usage.requests, rows[1].usage.cost_usd), (2, None));
}
