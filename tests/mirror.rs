//! Launch time that does not grow with the repository: GitHub repositories (a wiremock GitHub, git
//! served over smart HTTP behind the token) cloned from a mirror kept on the host and mounted
//! read-only into local sandboxes, or partially (`--filter=blob:none`) where there is no mirror.
//! The stand-in agent's `run` mode runs a script in the project and commits what it printed.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::git_http::GitHost;
use support::{fake_e2b, fixtures_bin, git, World};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghp_mirrorTEST0123456789abcdefghijklmnop";

/// GitHub's branch lookup, answered from the bare repository as it is now.
struct BranchHead(PathBuf);

impl Respond for BranchHead {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let name = request.url.path().rsplit("/branches/").next().unwrap();
        let out = std::process::Command::new("git")
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{name}"),
            ])
            .current_dir(&self.0)
            .output()
            .unwrap();
        if !out.status.success() {
            return ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Branch not found"}));
        }
        let sha = String::from_utf8(out.stdout).unwrap();
        ResponseTemplate::new(200)
            .set_body_json(json!({"name": name, "commit": {"sha": sha.trim()}}))
    }
}

/// GitHub's ref creation, made real in the bare repository.
struct CreateRef(PathBuf);

impl Respond for CreateRef {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let (name, sha) = (body["ref"].as_str().unwrap(), body["sha"].as_str().unwrap());
        git(&self.0, &["update-ref", name, sha]);
        ResponseTemplate::new(201).set_body_json(json!({"ref": name}))
    }
}

/// A GitHub serving each `(owner/name, bare repository)`: its API and its git behind the token.
struct Github {
    api: MockServer,
    git: GitHost,
}

async fn github(repos: &[(&str, &Path)]) -> Github {
    github_of_size(repos, 40).await
}

/// The same, GitHub reporting each repository's `size` as `size_kb`.
async fn github_of_size(repos: &[(&str, &Path)], size_kb: u64) -> Github {
    let api = MockServer::start().await;
    let git = GitHost::start(TOKEN, repos).await;
    for (name, dir) in repos {
        let repo = json!({"full_name": name, "default_branch": "main", "clone_url": git.clone_url(name), "html_url": format!("https://github.com/{name}"), "permissions": {"push": true}, "size": size_kb});
        Mock::given(method("GET"))
            .and(path(format!("/repos/{name}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(repo))
            .mount(&api)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(format!("^/repos/{name}/branches/.+")))
            .respond_with(BranchHead(dir.to_path_buf()))
            .mount(&api)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/repos/{name}/git/refs")))
            .respond_with(CreateRef(dir.to_path_buf()))
            .mount(&api)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(format!("^/repos/{name}/compare/.+")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ahead_by": 1, "files": [], "html_url": format!("https://github.com/{name}/compare/x")})))
            .mount(&api)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/repos/{name}/pulls")))
            .respond_with(ResponseTemplate::new(201).set_body_json(
                json!({"number": 9, "html_url": format!("https://github.com/{name}/pull/9")}),
            ))
            .mount(&api)
            .await;
        Mock::given(method("DELETE"))
            .and(path_regex(format!("^/repos/{name}/git/refs/heads/.+")))
            .respond_with(ResponseTemplate::new(204))
            .mount(&api)
            .await;
    }
    Github { api, git }
}

/// `codecourier launch --json --repo <repo>` against the mock GitHub, the agent in `run` mode
/// running `script`; the record, which must say the launch completed.
async fn launch(
    world: &World,
    hub: &Github,
    repo: &str,
    script: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut cmd = world.std_cmd();
    cmd.env("GITHUB_API_URL", hub.api.uri())
        .env("GITHUB_TOKEN", TOKEN)
        .args([
            "launch",
            "--json",
            "--repo",
            repo,
            "--prompt",
            "Look around",
        ])
        .args(["--env", "FAKE_CLAUDE=run", "--env"])
        .arg(format!("RUN_SCRIPT={script}"));
    for (name, value) in extra {
        cmd.env(name, value);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains("mirrorTEST") && !stderr.contains("mirrorTEST"),
        "token leaked"
    );
    let record: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(record["status"], "completed", "{record:#}\n{stderr}");
    record
}

fn phase_detail(record: &Value, phase: &str) -> String {
    record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == phase)
        .and_then(|p| p["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// What the agent's script printed, as committed on the launch's branch.
fn ran(origin: &Path, record: &Value) -> String {
    let branch = record["branch"].as_str().unwrap();
    git(origin, &["show", &format!("{branch}:ran.txt")])
}

/// The mirrors in the data directory.
fn mirrors(world: &World) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(world.dir.path().join("data/mirrors")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "git"))
        .collect()
}

/// A bare repository `name.git` in the world's directory whose `main` holds `file`.
fn another_repository(world: &World, name: &str, file: &str, text: &str) -> PathBuf {
    let root = world.dir.path();
    let bare = root.join(format!("{name}.git"));
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare.to_str().unwrap(),
        ],
    );
    let work = root.join(format!("{name}-seed"));
    git(
        root,
        &[
            "init",
            "--quiet",
            "--initial-branch=main",
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join(file), text).unwrap();
    git(&work, &["add", file]);
    git(&work, &["commit", "--quiet", "-m", &format!("Add {file}")]);
    git(
        &work,
        &["push", "--quiet", bare.to_str().unwrap(), "HEAD:main"],
    );
    bare
}

#[tokio::test(flavor = "multi_thread")]
async fn two_launches_of_one_repository_at_once_both_clone_from_one_consistent_mirror() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    let script = "cat README.md; git rev-parse origin/main";
    let (first, second) = tokio::join!(
        launch(&world, &hub, "acme/widgets", script, &[]),
        launch(&world, &hub, "acme/widgets", script, &[])
    );
    let main = git(&world.origin, &["rev-parse", "main"]);
    for record in [&first, &second] {
        let clone = phase_detail(record, "clone");
        assert!(clone.contains("mirror (fetched in "), "{clone}");
        assert!(clone.contains(" · cloned in "), "{clone}");
        let ran = ran(&world.origin, record);
        assert!(
            ran.contains("# Widgets") && ran.contains(main.trim()),
            "{ran}"
        );
        assert!(ran.ends_with("exit 0\n"), "{ran}");
    }
    let found = mirrors(&world);
    assert_eq!(found.len(), 1, "{found:?}");
    git(&found[0], &["fsck", "--no-progress", "--connectivity-only"]);
    assert_eq!(git(&found[0], &["rev-parse", "main"]), main);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_launches_at_once_after_another_one_of_them_takes_its_prepared_checkout_both_start_right(
) {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    launch(&world, &hub, "acme/widgets", "true", &[]).await;
    world.commit_to_origin("news.txt", "fresh from the remote\n");
    let main = git(&world.origin, &["rev-parse", "main"]);
    let script = "cat news.txt; git rev-parse HEAD; git status --porcelain";
    let (first, second) = tokio::join!(
        launch(&world, &hub, "acme/widgets", script, &[]),
        launch(&world, &hub, "acme/widgets", script, &[])
    );
    let details = [
        phase_detail(&first, "clone"),
        phase_detail(&second, "clone"),
    ];
    assert!(
        details
            .iter()
            .any(|d| d.contains("checkout prepared beforehand, brought to main in ")),
        "{details:#?}"
    );
    for record in [&first, &second] {
        assert_eq!(
            ran(&world.origin, record),
            format!("fresh from the remote\n{main}exit 0\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_after_new_commits_on_the_remote_starts_from_them() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    launch(&world, &hub, "acme/widgets", "true", &[]).await;
    world.commit_to_origin("news.txt", "fresh from the remote\n");
    let main = git(&world.origin, &["rev-parse", "main"]);
    let record = launch(
        &world,
        &hub,
        "acme/widgets",
        "cat news.txt; git rev-parse HEAD origin/main; git status --porcelain; git branch --format='%(refname:short) %(upstream:short)' --list main",
        &[],
    )
    .await;
    // The first launch left a checkout ready; this one took it and brought it up to date.
    let clone = phase_detail(&record, "clone");
    assert!(clone.contains("mirror (fetched in "), "{clone}");
    assert!(
        clone.contains("checkout prepared beforehand, brought to main in "),
        "{clone}"
    );
    assert!(
        clone.contains(&format!("at main ({})", &main[..8])),
        "{clone}"
    );
    let ran = ran(&world.origin, &record);
    assert_eq!(
        ran,
        format!("fresh from the remote\n{main}{main}main origin/main\nexit 0\n"),
        "{ran}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_force_pushed_base_branch_is_followed_and_the_work_lands_on_it() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    world.commit_to_origin("doomed.txt", "about to be rewritten away\n");
    let doomed = git(&world.origin, &["rev-parse", "main"]);
    launch(&world, &hub, "acme/widgets", "true", &[]).await;

    // The owners rewrite main: the doomed commit is gone, another stands in its place.
    let seed = world.dir.path().join("seed");
    git(&seed, &["reset", "--quiet", "--hard", "HEAD~1"]);
    std::fs::write(seed.join("kept.txt"), "the history as it is now\n").unwrap();
    git(&seed, &["add", "kept.txt"]);
    git(&seed, &["commit", "--quiet", "-m", "Rewritten"]);
    git(
        &seed,
        &["push", "--quiet", "--force", "origin", "HEAD:main"],
    );
    let main = git(&world.origin, &["rev-parse", "main"]);

    let record = launch(
        &world,
        &hub,
        "acme/widgets",
        "ls; git rev-parse origin/main; git log --format=%s origin/main",
        &[],
    )
    .await;
    // The checkout the first launch left ready held the doomed commit; it was brought over.
    let clone = phase_detail(&record, "clone");
    assert!(
        clone.contains("checkout prepared beforehand, brought to main in "),
        "{clone}"
    );
    let ran = ran(&world.origin, &record);
    assert!(
        ran.contains("kept.txt") && !ran.contains("doomed.txt"),
        "{ran}"
    );
    assert!(
        ran.contains(&format!("{main}Rewritten\nInitial commit\n")),
        "{ran}"
    );
    // The work was pushed on top of main as it is now.
    let branch = record["branch"].as_str().unwrap();
    git(
        &world.origin,
        &["merge-base", "--is-ancestor", main.trim(), branch],
    );
    let mirror = &mirrors(&world)[0];
    assert_eq!(git(mirror, &["rev-parse", "main"]), main);
    assert_ne!(main, doomed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_that_cannot_be_updated_is_passed_by_and_the_launch_clones_over_the_network() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    launch(&world, &hub, "acme/widgets", "true", &[]).await;
    let mirror = &mirrors(&world)[0];
    std::fs::write(mirror.join("HEAD"), "not a ref\n").unwrap();
    world.commit_to_origin("news.txt", "fresh from the remote\n");

    let record = launch(&world, &hub, "acme/widgets", "cat news.txt", &[]).await;
    let clone = phase_detail(&record, "clone");
    assert!(
        clone.contains("the mirror could not be updated (") && clone.contains("full clone in "),
        "{clone}"
    );
    assert_eq!(
        ran(&world.origin, &record),
        "fresh from the remote\nexit 0\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_prepared_checkout_the_sandbox_clones_from_the_mirror_borrowing_its_objects() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    launch(&world, &hub, "acme/widgets", "true", &[]).await;
    // Where checkouts are prepared and kept is not a directory any more: none is ready.
    let mirror = &mirrors(&world)[0];
    let checkouts = mirror.with_extension("checkouts");
    std::fs::remove_dir_all(&checkouts).unwrap();
    std::fs::write(&checkouts, "in the way\n").unwrap();
    world.commit_to_origin("news.txt", "fresh from the remote\n");
    let main = git(&world.origin, &["rev-parse", "main"]);

    let record = launch(
        &world,
        &hub,
        "acme/widgets",
        "cat news.txt .git/objects/info/alternates; git rev-parse origin/main; git count-objects",
        &[],
    )
    .await;
    let clone = phase_detail(&record, "clone");
    assert!(
        clone.contains("mirror (fetched in ") && clone.contains(" · cloned in "),
        "{clone}"
    );
    assert_eq!(
        ran(&world.origin, &record),
        format!(
            "fresh from the remote\n/srv/mirror/objects\n{main}0 objects, 0 kilobytes\nexit 0\n"
        )
    );
}

/// Three versions of `old.txt` on the origin's main, one commit each.
fn old_file_history(world: &World) {
    let seed = world.dir.path().join("seed");
    for version in 1..=3 {
        std::fs::write(
            seed.join("old.txt"),
            format!("version {version} of the old file\n"),
        )
        .unwrap();
        git(&seed, &["add", "old.txt"]);
        git(
            &seed,
            &["commit", "--quiet", "-m", &format!("old.txt v{version}")],
        );
    }
    git(&seed, &["push", "--quiet", "origin", "HEAD:main"]);
}

/// What the agent runs to show a partial clone: its filter, how many objects it lacks, and the
/// old file's history with every version's contents.
const READ_OLD_HISTORY: &str = "git config remote.origin.partialclonefilter; echo missing $(git rev-list --objects --missing=print --all | grep -c '^?'); git log -p --format=%s -- old.txt";

/// What it printed: a partial clone that lacked blobs, and got each old version when read.
fn assert_old_history_read_from_a_partial_clone(ran: &str) {
    let missing: usize = ran
        .lines()
        .find_map(|l| l.strip_prefix("missing "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ran}"));
    assert!(missing >= 2, "the clone held every blob: {ran}");
    assert!(ran.starts_with("blob:none\n"), "{ran}");
    for version in 1..=3 {
        assert!(
            ran.contains(&format!("+version {version} of the old file")),
            "{ran}"
        );
    }
    assert!(ran.ends_with("exit 0\n"), "{ran}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_mirror_a_large_repository_is_cloned_partially_and_old_history_fetched_when_read()
{
    let world = World::new();
    old_file_history(&world);
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    // The partial method forced on the local provider: no mirror, and every size counts as large.
    let catalog = world.dir.path().join("partial.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalog/catalog.toml"),
    )
    .unwrap()
    .replace("mirror = true", "mirror = false")
    .replace("partial_from_kb = 50000", "partial_from_kb = 0");
    std::fs::write(&catalog, text).unwrap();

    let record = launch(
        &world,
        &hub,
        "acme/widgets",
        READ_OLD_HISTORY,
        &[("CODECOURIER_CATALOG", catalog.to_str().unwrap())],
    )
    .await;
    let clone = phase_detail(&record, "clone");
    assert!(clone.contains("partial clone (blob:none) in "), "{clone}");
    assert_old_history_read_from_a_partial_clone(&ran(&world.origin, &record));
    assert!(mirrors(&world).is_empty());
    // The clone, the blobs fetched when read, and CodeCourier's own fetch before the push: all
    // from the git host, with the token the gateway added, in protocol v2 (which the gateway
    // passes on).
    let packs: Vec<_> = hub
        .git
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
        .collect();
    assert!(
        packs.len() >= 3
            && packs
                .iter()
                .all(|r| r.authorized && r.headers.contains("git-protocol: version=2")),
        "{packs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_e2b_a_repository_above_the_catalogs_size_is_cloned_partially_and_reads_old_history() {
    let world = World::new();
    old_file_history(&world);
    // Above the built-in catalog's partial_from_kb (50,000 KB).
    let hub = github_of_size(&[("acme/widgets", &world.origin)], 60_000).await;
    let fake = fake_e2b::start(world.dir.path().join("vms"), fixtures_bin(), Vec::new()).await;
    let record = launch(
        &world,
        &hub,
        "acme/widgets",
        READ_OLD_HISTORY,
        &[
            ("SANDBOX_PROVIDER", "e2b"),
            ("E2B_API_KEY", fake_e2b::API_KEY),
            ("E2B_API_URL", &fake.url),
            ("E2B_SANDBOX_URL", &fake.url),
        ],
    )
    .await;
    let clone = phase_detail(&record, "clone");
    assert!(clone.contains("partial clone (blob:none) in "), "{clone}");
    assert_old_history_read_from_a_partial_clone(&ran(&world.origin, &record));
    assert!(mirrors(&world).is_empty());
}

// The agent as an attacker (DESIGN.md section 10), against the mirror.

#[tokio::test(flavor = "multi_thread")]
async fn the_mirror_is_read_only_inside_the_sandbox() {
    let world = World::new();
    let hub = github(&[("acme/widgets", &world.origin)]).await;
    let script = "ls /srv/mirror/HEAD; touch /srv/mirror/planted && echo planted; echo evil >> /srv/mirror/config && echo configured; git -C /srv/mirror update-ref refs/heads/main HEAD~0 2>&1; git -C /srv/mirror branch evil main && echo branched; mkdir /srv/mirror/hooks/x && echo hooked; true";
    let record = launch(&world, &hub, "acme/widgets", script, &[]).await;
    let ran = ran(&world.origin, &record);
    assert!(
        ran.starts_with("/srv/mirror/HEAD\n"),
        "the mirror is mounted: {ran}"
    );
    for done in ["planted", "configured", "branched", "hooked"] {
        assert!(!ran.lines().any(|l| l == done), "{done}: {ran}");
    }
    let mirror = &mirrors(&world)[0];
    assert!(!mirror.join("planted").exists());
    assert!(!std::fs::read_to_string(mirror.join("config"))
        .unwrap()
        .contains("evil"));
    assert!(git(mirror, &["branch", "--list", "evil"]).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_of_one_repository_never_sees_another_repositorys_mirror() {
    let world = World::new();
    let secret_file = "ALPHA-ONLY.txt";
    let alpha = another_repository(&world, "alpha", secret_file, "alpha's own\n");
    let alpha_sha = git(&alpha, &["rev-parse", "main"]);
    let hub = github(&[("acme/widgets", &world.origin), ("acme/alpha", &alpha)]).await;
    launch(&world, &hub, "acme/alpha", "true", &[]).await;
    assert_eq!(mirrors(&world).len(), 1);

    let data = world.dir.path().join("data");
    let script = format!(
        "ls /srv; git -C /srv/mirror cat-file -t {} 2>&1; ls {}/mirrors 2>&1; find / -name '{secret_file}' 2>/dev/null; git -C /srv/mirror log --all --format=%s",
        alpha_sha.trim(),
        data.display()
    );
    let record = launch(&world, &hub, "acme/widgets", &script, &[]).await;
    let ran = ran(&world.origin, &record);
    assert!(ran.starts_with("mirror\n"), "only its own mirror: {ran}");
    assert!(
        !ran.contains(secret_file) && !ran.contains("Add ALPHA"),
        "{ran}"
    );
    assert!(
        !ran.lines().any(|l| l == "commit"),
        "alpha's commit is reachable: {ran}"
    );
    assert!(ran.contains("Initial commit"), "{ran}");
    assert_eq!(mirrors(&world).len(), 2);
}
